"""Rejection reports: what became of a batch's rows, returned to the department or community that sent it.

A report is built from the city node's ledger (`_civicnet.batches`) and quarantine
(`_civicnet.quarantine`) once the batch is decided: its counts (checked: received = applied +
quarantined + duplicates + held), why it was refused, the gate's warnings, and every
quarantined row with its line, key, reasons and the values as sent. It is rendered as JSON, as
CSV (one line per row and reason, for Excel) and as text, and written to the sender's outbox
folder, `<home>/outbox/<sender or department>/<dataset>/<batch_id>.{json,csv,txt}`.

Its sentences are in zh-CN unless `lang="en"` is asked for (schemas/i18n.py, the `civicnet`
catalogue): reason codes, JSON keys and CSV headers stay stable machine words; the sentences
(refusal, warnings, each row's reason, what to do) and the text form are translated, and times in
the text read in Asia/Shanghai.

A report goes to the outbox for every decided batch that has quarantined rows, gate warnings
or was refused; a clean batch gets none (`RejectionReport.needs_return` is False and
`write_outbox` writes nothing).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import duckdb

from quality.conform import SourceMapping
from quality.reasons import translated_message
from quality.verdict import ExpectationOutcome, Verdict, ledger_gate
from schemas.contract import Contract
from schemas.csvsafe import safe_cell
from schemas.derive import display_key
from schemas.errors import TerminalError
from schemas.homefiles import make_folder, write_atomic
from schemas.i18n import DEFAULT_LANG, N_, format_time, parse_lang, translation
from schemas.layout import outbox_folder
from schemas.sql import qualified

COUNTS = ("received", "applied", "quarantined", "duplicates", "held")
MAX_LISTED = 100_000  # quarantined rows listed in one report; `by_reason` always covers all of them
TEXT_ROWS = 200  # rows in the text form (the CSV and JSON have every listed row)
# A folder name: letters, digits, _ - : and (not first, so never '.' or '..') dots, as sender ids have.
_SLUG = re.compile(r"^[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,127}$")
_HEX = re.compile(r"^[0-9a-f]{1,128}$")
NUMBER_TYPES = ("integer", "number")


class UndecidedBatchError(TerminalError):
    """The node has no ledger row for the batch yet: there is nothing to report."""


class OutboxPathError(TerminalError):
    """A sender, department or dataset name would not make a plain folder inside the outbox."""


class BatchOrigin(Protocol):
    """What the landing manifest adds to the ledger: who pushed the batch (None if pulled)."""

    @property
    def sender(self) -> str | None: ...


@dataclass(frozen=True)
class RowReason:
    """One reason a row was quarantined, with the raw value of its field as sent (None if not sent).

    `numeric`: the field is a number in the contract, or the value was sent as a number (the CSV
    keeps a plain number in it unquoted)."""

    code: str
    field: str
    message: str
    value: str | None
    numeric: bool = False


@dataclass(frozen=True)
class QuarantinedRow:
    """A quarantined row: its line in the file, its key if it has one, its reasons and raw values."""

    line: int
    key: str | None
    reasons: tuple[RowReason, ...]
    raw: dict[str, Any] | None
    released_by: str | None = None
    released_at: str | None = None


@dataclass(frozen=True)
class RejectionReport:
    """Everything a sender needs to fix and resend what a batch could not deliver."""

    batch_id: str
    dataset: str
    feed: str
    department: str
    sender: str | None
    source_name: str
    received_at: str
    decided_at: str
    status: str  # 'applied' | 'refused'
    verdict: Verdict
    counts: dict[str, int]
    balanced: bool  # received = applied + quarantined + duplicates + held
    refusal: tuple[str, ...]
    warnings: tuple[str, ...]
    by_reason: tuple[tuple[str, str, int], ...]  # (code, field, rows), over every quarantined row
    rows: tuple[QuarantinedRow, ...]  # the first MAX_LISTED, by line
    what_to_do: str
    released: int = 0  # quarantined rows of earlier batches that this batch's corrected rows released
    lang: str = DEFAULT_LANG  # the language of its sentences ('zh_CN' or 'en')

    @property
    def needs_return(self) -> bool:
        """Whether the sender must hear of this batch (a clean applied batch needs no report)."""
        return self.status == "refused" or self.counts["quarantined"] > 0 or bool(self.warnings)

    @property
    def recipient(self) -> str:
        """Whose outbox the report goes to: the pushing sender, else the department."""
        return self.sender or self.department

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (built by hand: `asdict` deep-copies, seconds for 100,000 rows)."""
        head = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "rows"}
        head["by_reason"] = [list(r) for r in self.by_reason]
        return head | {"needs_return": self.needs_return, "rows": [_row_dict(row) for row in self.rows]}


def _row_dict(row: QuarantinedRow) -> dict[str, Any]:
    return {"line": row.line, "key": row.key,
            "reasons": [{"code": r.code, "field": r.field, "message": r.message, "value": r.value}
                        for r in row.reasons],
            "raw": row.raw, "released_by": row.released_by, "released_at": row.released_at}


def build_report(con: duckdb.DuckDBPyConnection, node: str, batch_id: str, origin: BatchOrigin,
                 mapping: SourceMapping | None = None, contract: Contract | None = None,
                 lang: str = DEFAULT_LANG) -> RejectionReport:
    """The report on a decided batch from the ledger and quarantine of node `node` (attached on `con`).

    `origin` is the batch's landing manifest (for the sender); `mapping` is the feed's source
    mapping, which names the raw column behind each reason's field; `contract` the dataset's, whose
    number fields keep plain numbers unquoted in the CSV; `lang` the language of its sentences.
    Raises UndecidedBatchError if the ledger has no row for the batch."""
    lang = parse_lang(lang)
    _ = translation(lang).gettext
    found = con.execute(f"""SELECT dataset, feed, department, source_name, {_utc("received_at")},
            {_utc("decided_at")}, status, gate, released, {", ".join(COUNTS)}
            FROM {qualified(node, "_civicnet", "batches")} WHERE batch_id = ?""", [batch_id]).fetchall()
    if not found:
        raise UndecidedBatchError(f"batch {batch_id} has no decision in node {node!r} yet (it is not in "
                                  "_civicnet.batches); ask again once it has been applied or refused")
    dataset, feed, department, source_name, received_at, decided_at, status, gate_json, freed, *numbers = found[0]
    counts = dict(zip(COUNTS, (int(n or 0) for n in numbers), strict=True))
    gate = ledger_gate(batch_id, dataset, gate_json)
    # the failed expectations, or, for a batch refused before the gate ran (columns missing), the error
    refusal = [gate_sentence(r, counts, lang) for r in gate.failed if r.severity == "error"] or (
        [gate.error] if gate.error else [])
    if status == "refused" and not refusal:
        refusal = [_("the quality gate refused the batch; the city's operators have the details")]
    warnings = [gate_sentence(r, counts, lang) for r in gate.failed if r.severity != "error"]
    balanced = counts["received"] == sum(counts[k] for k in COUNTS[1:])
    sources = {field: source for source, field in mapping.fields.items()} if mapping else {}
    number_fields = frozenset(f.name for f in contract.fields if f.type in NUMBER_TYPES) if contract else frozenset()
    rows = _quarantined(con, node, batch_id, sources, number_fields, lang)
    by_reason = con.execute(f"""SELECT r.code, r.field, count(*) FROM (SELECT unnest(reasons) AS r
            FROM {qualified(node, "_civicnet", "quarantine")} WHERE batch_id = ?) GROUP BY ALL ORDER BY 3 DESC, 1, 2""",
                            [batch_id]).fetchall()
    return RejectionReport(
        batch_id, dataset, feed, department, origin.sender, source_name, received_at, decided_at, status,
        gate.verdict or ("fail" if status == "refused" else "pass"), counts, balanced,
        tuple(refusal), tuple(warnings), tuple((c, f, int(n)) for c, f, n in by_reason), rows,
        what_to_do(status, counts, bool(warnings),
                   sum(int(n) for c, _f, n in by_reason if c == "key_owned_elsewhere"), lang),
        int(freed or 0), lang)


def _utc(column: str) -> str:
    """A TIMESTAMPTZ as ISO 8601 text in UTC, whatever the session's time zone."""
    return f"strftime(timezone('UTC', {column}), '%Y-%m-%dT%H:%M:%S.%fZ')"


def _quarantined(con: duckdb.DuckDBPyConnection, node: str, batch_id: str, sources: dict[str, str],
                 numbers: frozenset[str] = frozenset(), lang: str = DEFAULT_LANG) -> tuple[QuarantinedRow, ...]:
    """The batch's quarantined rows by line, with their keys and releases."""
    found = con.execute(f"""SELECT line, reasons, raw, key, released_by, {_utc("released_at")}
                            FROM {qualified(node, "_civicnet", "quarantine")}
                            WHERE batch_id = ? ORDER BY line LIMIT {MAX_LISTED}""", [batch_id]).fetchall()
    out = []
    for line, reasons, raw_json, key, released_by, released_at in found:
        raw = json.loads(raw_json) if raw_json else None
        listed = tuple(_reason(r, raw, sources.get(r["field"], r["field"]), numbers, lang) for r in reasons)
        out.append(QuarantinedRow(int(line), key, listed, raw, released_by, released_at))
    return tuple(out)


def _reason(r: dict[str, str], raw: dict[str, Any] | None, column: str, numbers: frozenset[str],
            lang: str = DEFAULT_LANG) -> RowReason:
    value = (raw or {}).get(column)
    sent_as_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return RowReason(r["code"], r["field"], translated_message(r["code"], r["message"], lang),
                     None if value is None else str(value), r["field"] in numbers or sent_as_number)


_GATE_SENTENCES = {
    "expect_table_columns_to_match_set": N_("the rows that passed the checks do not have the contract's columns "
                                         "(observed {observed})"),
    "expect_table_row_count_to_be_between": N_("no row of the batch passed the checks (a batch must deliver "
                                            "at least one row)"),
    "expect_column_values_to_be_unique": N_("{n} rows repeat a value of the key {column}; each record must "
                                         "appear once"),
    "expect_compound_columns_to_be_unique": N_("{n} rows repeat a key ({column}); each record must appear once"),
    "expect_column_values_to_not_be_null": N_("{n} rows have no {column}, which is required"),
    "expect_column_values_to_be_in_set": N_("{n} rows have a {column} outside its code list"),
    "expect_column_values_to_match_regex": N_("{n} rows have a {column} that is not in the required form"),
    "expect_column_values_to_be_between": N_("{n} rows have a {column} outside the allowed range"),
    "expect_column_value_lengths_to_be_between": N_("{n} rows have a {column} that is too short or too long"),
    "expect_column_values_to_be_in_type_list": N_("{n} rows have a {column} of the wrong type"),
    "expect_column_values_to_be_valid_citizen_id": N_("{n} rows have a {column} that fails the GB 11643 check"),
    "expect_column_pair_values_to_be_division_of_vintage": N_("{n} rows have a {column} that is not a division of "
                                                           "the right tier in the row's vintage"),
    "unexpected_rows_expectation": N_("{n} rows break the {description}"),
}
# Checks over the batch's one-row summary (quality/suite.py): sentences from the ledger's counts.
_SUMMARY_SENTENCES = {
    ("quarantined_share", "error"): N_("{quarantined} of {received} rows ({share:.1%}) failed the row checks, more "
                                    "than the gate accepts in one batch: the file as a whole looks wrong"),
    ("broken_key_share", "error"): N_("too many rows have no key or repeat a key with different content: the key "
                                   "column is broken (check how the file's key column was exported)"),
    ("volume_ratio", "error"): N_("the batch has far fewer rows ({received}) than this dataset's recent "
                               "deliveries: it is taken for a truncated export, and nothing of it was applied"),
    ("volume_ratio", "warn"): N_("the batch's row count ({received}) differs markedly from this dataset's recent "
                              "deliveries; check that the file is complete"),
}


def gate_sentence(result: ExpectationOutcome, counts: dict[str, int], lang: str = DEFAULT_LANG) -> str:
    """One failed gate expectation as a sentence for the sender (in `lang`, zh-CN by default)."""
    _ = translation(lang).gettext
    name, column = result.expectation, result.column
    where = column or _("the batch")
    if result.exception:
        return _("the check {name} on {column} could not run: {error}").format(
            name=name, column=where, error=result.exception)
    summary = _SUMMARY_SENTENCES.get((str(column), result.severity))
    if summary is not None:
        share = counts["quarantined"] / counts["received"] if counts["received"] else 0.0
        return _(summary).format(share=share, **counts)
    template = _GATE_SENTENCES.get(name)
    n, observed = result.unexpected_count, result.observed_value
    if n is None and isinstance(observed, int) and name == "unexpected_rows_expectation":
        n = observed  # a custom-SQL expectation reports its row count as the observed value
    if template is None:
        sentence = _("the check {name} on {column} failed (observed {observed}, {n} unexpected values)").format(
            name=name, column=where, observed=observed, n=n)
    else:
        sentence = _(template).format(n=n if n is not None else _("some"), column=column, observed=observed,
                                      description=result.description or _("dataset's rules"))
    examples = result.partial_unexpected
    return sentence + (_(" (for example: {values})").format(values=", ".join(map(str, examples))) if examples else "")


def what_to_do(status: str, counts: dict[str, int], warned: bool, owned_elsewhere: int = 0,
               lang: str = DEFAULT_LANG) -> str:
    """The paragraph that tells the sender what to do next, in `lang` (zh-CN by default); `owned_elsewhere`:
    rows quarantined because their key is another division's current record, which no resubmission of the
    same key releases."""
    _ = translation(lang).gettext
    resend = _("A resubmission of the same keys releases the rows from quarantine; "
               "rows sent again unchanged are quarantined again.")
    if owned_elsewhere:
        resend += " " + _("The {n} rows marked key_owned_elsewhere are not released by sending them again: "
                          "their keys are current records of other divisions. Correct the key, or ask the "
                          "department that owns the dataset to record the move.").format(n=owned_elsewhere)
    if status == "refused":
        return _("Nothing of this batch was applied: the city's data is unchanged and the batch's "
                 "{held} clean rows are held, not applied. Correct the problems listed under "
                 "'refused' and the quarantined rows listed in this report, then send the whole corrected file "
                 "again. {resend}").format(held=counts["held"], resend=resend)
    if counts["quarantined"]:
        return _("{applied} rows were applied; the {quarantined} quarantined rows listed "
                 "in this report were not. Fix those rows (each line number is the row's line in your file) and send "
                 "the corrected rows again, in a file of the same form. {resend}").format(
            applied=counts["applied"], quarantined=counts["quarantined"], resend=resend)
    if warned:
        return _("The batch was applied. Nothing needs to be resent; check the warnings before your next delivery.")
    return _("The batch was applied whole. Nothing needs to be done.")


def to_json(report: RejectionReport) -> str:
    """The report as JSON text (UTF-8 characters kept): indented, with one quarantined row a line."""
    content = report.to_dict()
    rows = content.pop("rows")
    head = json.dumps(content, ensure_ascii=False, indent=1).removesuffix("\n}")
    listed = ",\n".join("  " + json.dumps(row, ensure_ascii=False) for row in rows)
    return head + (f',\n "rows": [\n{listed}\n ]\n}}' if rows else ',\n "rows": []\n}')


def to_csv(report: RejectionReport) -> str:
    """One line per quarantined row and reason: line, key, field, code, message, the field's raw value.

    The text starts with a byte-order mark, so that Excel opens the UTF-8 (and its Chinese) correctly
    once written as UTF-8. Every cell goes through `schemas.csvsafe.safe_cell`: one a spreadsheet
    would evaluate is prefixed with an apostrophe (a plain number of a number field stays a number)."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["line", "key", "field", "code", "message", "value", "released_by"])
    for row in report.rows:
        for r in row.reasons:
            writer.writerow([safe_cell(row.line), safe_cell(display_key(row.key)), safe_cell(r.field),
                             safe_cell(r.code), safe_cell(r.message), safe_cell(r.value, numeric=r.numeric),
                             safe_cell(row.released_by)])
    return out.getvalue()


def to_text(report: RejectionReport) -> str:
    """The report as plain text for people, in the report's language, times in Asia/Shanghai."""
    _ = translation(report.lang).gettext
    c, lang = report.counts, report.lang
    by = (_("sender {sender} ({department})").format(sender=report.sender, department=report.department)
          if report.sender else _("department {department}").format(department=report.department))
    lines = [_("batch {batch} ({file}): {status}").format(batch=report.batch_id, file=report.source_name,
                                                          status=_(_STATUS_WORDS.get(report.status, report.status))),
             "  " + _("dataset {dataset}, feed {feed}, from {by}, received {received}, decided {decided}, "
                      "gate {verdict}").format(dataset=report.dataset, feed=report.feed, by=by,
                                               received=format_time(report.received_at, lang),
                                               decided=format_time(report.decided_at, lang),
                                               verdict=_(_STATUS_WORDS.get(report.verdict, report.verdict))),
             "  " + ", ".join(_(_COUNT_WORDS[k]) + f" {c[k]}" for k in COUNTS)
             + ("" if report.balanced else "  " + _("UNBALANCED: received is not applied + quarantined + "
                                                    "duplicates + held; tell the city's operators"))]
    lines += ["  " + _("refused: {sentence}").format(sentence=s) for s in report.refusal]
    lines += ["  " + _("warning: {sentence}").format(sentence=s) for s in report.warnings]
    if report.released:
        lines.append("  " + _("released: {n} quarantined rows of earlier batches, corrected by this one").format(
            n=report.released))
    if report.by_reason:
        lines.append("  " + _("quarantined by reason: {reasons}").format(
            reasons=", ".join(f"{code} ({f}) {n}" for code, f, n in report.by_reason)))
    if report.rows:
        lines.append("  " + _("quarantined rows (fix them and send them again):"))
    for row in report.rows[:TEXT_ROWS]:
        reasons = "; ".join(f"{r.code} ({r.field}): {r.message}" for r in row.reasons)
        key = " " + _("[key {key}]").format(key=display_key(row.key)) if row.key else ""
        released = " " + _("[released by batch {batch}]").format(batch=row.released_by) if row.released_by else ""
        lines.append("    " + _("line {line}: {reasons}").format(line=row.line, reasons=reasons) + key + released)
    if c["quarantined"] > min(len(report.rows), TEXT_ROWS):
        lines.append("    " + _("... and {n} more rows: see the CSV report").format(
            n=c["quarantined"] - min(len(report.rows), TEXT_ROWS)))
    lines.append("  " + _("what to do: {what}").format(what=report.what_to_do))
    return "\n".join(lines) + "\n"


# machine words of the ledger, as the text report says them
_STATUS_WORDS = {"applied": N_("applied"), "refused": N_("refused"), "pass": N_("pass"), "warn": N_("warn"),
                 "fail": N_("fail")}
_COUNT_WORDS = {"received": N_("received"), "applied": N_("applied"), "quarantined": N_("quarantined"),
                "duplicates": N_("duplicates"), "held": N_("held")}


def outbox_dir(home: Path, who: str, dataset: str) -> Path:
    """`<home>/outbox/<who>/<dataset>`, after checking both are plain folder names."""
    for what, name in (("sender or department", who), ("dataset", dataset)):
        if not _SLUG.match(name):
            raise OutboxPathError(f"{what} {name!r} is not a plain name (letters, digits, _ - : and inner dots); "
                                  "the report would land outside the outbox: fix the sender id or dataset slug")
    root = outbox_folder(home).resolve()
    folder = (root / who / dataset).resolve()
    if not folder.is_relative_to(root):  # resolve() follows links: a linked folder must stay inside too
        raise OutboxPathError(f"outbox folder {folder} lies outside {root}; remove the link that leads there")
    return folder


def _write_atomic(path: Path, text: str) -> None:
    """Write unless the file already holds exactly this text (reports are reproducible), via tmp + replace."""
    data = text.encode("utf-8")
    if path.exists() and path.read_bytes() == data:
        return
    write_atomic(path, data)


def write_outbox(home: Path, report: RejectionReport) -> list[Path]:
    """Write the report's JSON, CSV and text into the recipient's outbox; the paths written.

    Nothing is written for a clean batch (no quarantined rows, no warnings, not refused). Writing
    the same report again changes nothing (idempotent)."""
    if not report.needs_return:
        return []
    if not _HEX.match(report.batch_id):
        raise OutboxPathError(f"batch id {report.batch_id!r} is not hex; a report is written only for landed batches")
    folder = outbox_dir(home, report.recipient, report.dataset)
    make_folder(folder)
    paths = []
    for suffix, render in (("json", to_json), ("csv", to_csv), ("txt", to_text)):
        path = folder / f"{report.batch_id}.{suffix}"
        _write_atomic(path, render(report))
        paths.append(path)
    return paths
