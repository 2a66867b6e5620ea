"""`civicnet push`: check a file locally, send it to the push gateway, and wait for the verdict.

The file is read and conformed here first, with the same code the city runs, so that a sender
learns of unreadable files and wrong columns before anything is sent (exit 2), and sees which
rows would be quarantined. Those rows are still sent: the gateway decides, and its rejection
report (`--report`: waits for the verdict, then prints the text report from
`GET /v1/batches/<id>/report`) is the word that counts.

Exit codes: 0 sent, 2 refused by the local check, 3 refused by (or unreachable) gateway,
4 no verdict within `--wait` seconds.

Its readers are community work stations and departments: its own sentences are zh-CN by default,
English with `lang="en"` (`--lang en`), from the `civicnet` catalogue (schemas/i18n.py); the
gateway's report is asked for in the same language. Reason codes stay machine codes.

This module composes; the upload checks it shares with the gateway are connectors/push/uploads.py,
the HTTP calls connectors/push/client.py.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import requests

from connectors.push.client import FINAL, fetch_report, gateway_error, gateway_session, send_file, wait_for_verdict
from schemas.errors import TerminalError
from schemas.i18n import DEFAULT_LANG, N_, translation

EXIT_SENT, EXIT_LOCAL, EXIT_GATEWAY, EXIT_TIMEOUT = 0, 2, 3, 4
SHOWN = 5  # quarantined rows listed by the local check


class LocalCheckError(TerminalError):
    """The file cannot be sent: unreadable, wrong columns, too big, or no push feed for the dataset."""


@dataclass(frozen=True)
class LocalCheck:
    """What the local check found: the file's rows and those the city would quarantine."""

    media_type: str
    rows: int
    duplicates: int
    by_reason: Counter[str]
    examples: list[dict[str, Any]]  # the first quarantined rows (line, reasons), described in the reader's language


def check_file(path: Path, dataset: str, today: dt.date) -> LocalCheck:
    """Read and conform a file as the city will; raise LocalCheckError if it cannot be sent."""
    from civicnet import context
    from connectors.push.uploads import UploadRefusedError, push_feeds, push_source, read_upload
    from quality.conform import check_columns, conform_batch
    from schemas.contract import load_contracts
    from schemas.media import MEDIA_TYPES

    try:
        feed, source = push_source(push_feeds(), dataset)
    except UploadRefusedError as err:
        raise LocalCheckError(str(err)) from None
    media_type = MEDIA_TYPES.get(path.suffix.lower().lstrip("."))
    if media_type is None:
        raise LocalCheckError(f"{path.name}: extension {path.suffix!r} is not one the gateway reads; "
                              f"save the file as one of {sorted('.' + e for e in MEDIA_TYPES)}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise LocalCheckError(f"cannot read {path}: {err.strerror}") from None
    if len(data) > source.max_bytes:
        raise LocalCheckError(f"{path.name} has {len(data)} bytes, over the limit of {source.max_bytes} "
                              f"for {dataset!r}; split it into smaller files")
    contract, mapping = load_contracts()[dataset], context.source_mapping(feed)
    try:
        table = read_upload(data, media_type, None, path.name)
        check_columns(table.column_names, mapping, contract)
    except TerminalError as err:
        raise LocalCheckError(str(err)) from None
    conformed = conform_batch(table, contract, mapping, {context.VINTAGE: context.registry()}, today)
    quarantined = conformed.quarantined.to_pylist()
    by_reason = Counter(r["code"] for row in quarantined for r in row["reasons"])
    return LocalCheck(media_type, table.num_rows, conformed.duplicates, by_reason, quarantined[:SHOWN])


def _describe(row: dict[str, Any], lang: str = DEFAULT_LANG) -> str:
    reasons = "; ".join(f"{r['code']} ({r['field']}): {r['message']}" for r in row["reasons"])
    return translation(lang).gettext("line {line}: {reasons}").format(
        line=row.get("line", row.get("_line")), reasons=reasons)


def render_check(path: Path, check: LocalCheck, lang: str = DEFAULT_LANG) -> str:
    """The local check as sentences for the sender."""
    _ = translation(lang).gettext
    lines = [_("{file}: {rows} rows read").format(file=path.name, rows=check.rows)]
    if check.duplicates:
        lines.append("  " + _("{n} rows repeat an earlier row exactly (counted as duplicates)").format(
            n=check.duplicates))
    if check.by_reason:
        total = ", ".join(f"{code} {n}" for code, n in sorted(check.by_reason.items()))
        lines.append("  " + _("rows the city would quarantine, by reason: {total}; the first of them:").format(
            total=total))
        lines += ["    " + _describe(example, lang) for example in check.examples]
        lines.append("  " + _("these rows are sent too: the gateway decides and reports them (use --report)"))
    else:
        lines.append("  " + _("every row passes the local checks"))
    return "\n".join(lines)


# the status's machine words and counts, as the sender reads them
STATUS_WORDS = {"applied": N_("applied"), "refused": N_("refused"), "processing": N_("processing"),
                "pending": N_("pending")}
COUNT_WORDS = {"received": N_("received"), "applied": N_("applied"), "quarantined": N_("quarantined"),
               "duplicates": N_("duplicates"), "held": N_("held")}


def render_report(status: dict[str, Any], lang: str = DEFAULT_LANG) -> str:
    """The rejection report: the verdict, the counts, and each quarantined row with its reasons."""
    _ = translation(lang).gettext
    c = status["counts"]
    state = _(STATUS_WORDS.get(status["status"], status["status"]))
    lines = [_("batch {batch} ({file}): {status}").format(batch=status["batch_id"], file=status["file"],
                                                          status=state),
             "  " + ", ".join(_(COUNT_WORDS[k]) + f" {c[k]}" for k in COUNT_WORDS if c.get(k) is not None)]
    if status.get("error"):
        lines.append("  " + _("error: {error}").format(error=status["error"]))
    if status["quarantined_rows"]:
        lines.append("  " + _("quarantined rows (fix them and send them again):"))
        lines += ["    " + _describe(row, lang) for row in status["quarantined_rows"]]
    if c.get("quarantined") and c["quarantined"] > len(status["quarantined_rows"]):
        lines.append("    " + _("... and {n} more").format(n=c["quarantined"] - len(status["quarantined_rows"])))
    return "\n".join(lines)


def _verdict_text(gateway: str, token: str, status: dict[str, Any], err: TextIO,
                  session: requests.Session | None = None, lang: str = DEFAULT_LANG) -> str:
    """The gateway's report once the batch is decided, else (or if it cannot be read) the status."""
    if status["status"] not in FINAL or not status.get("report"):
        return render_report(status, lang)
    try:
        return fetch_report(gateway, token, status["report"], session, lang)
    except requests.RequestException as error:
        _ = translation(lang).gettext
        print(_("civicnet push: the report could not be read ({error}); the batch status follows").format(
            error=error), file=err)
        return render_report(status, lang)


def push(gateway: str, token: str | None, dataset: str, path: Path, report: bool, wait: float,
         out: TextIO, err: TextIO, today: dt.date, lang: str = DEFAULT_LANG) -> int:
    """The whole of `civicnet push`; returns the exit code (messages in `lang`, zh-CN by default)."""
    _ = translation(lang).gettext
    if not token:
        print(_("civicnet push: no token; set CIVICNET_TOKEN (preferred) or pass --token"), file=err)
        return EXIT_LOCAL
    try:
        check = check_file(path, dataset, today)
    except LocalCheckError as error:
        print(_("civicnet push: not sent: {error}").format(error=error), file=err)
        return EXIT_LOCAL
    print(render_check(path, check, lang), file=err)
    with gateway_session(token) as session:
        return _send_and_wait(gateway, token, dataset, path, check, report, wait, out, err, session, lang)


def _send_and_wait(gateway: str, token: str, dataset: str, path: Path, check: LocalCheck, report: bool,
                   wait: float, out: TextIO, err: TextIO, session: requests.Session, lang: str = DEFAULT_LANG) -> int:
    """Send a checked file and, with `report`, wait for its verdict; returns the exit code (messages in `lang`)."""
    _ = translation(lang).gettext
    try:
        answer = send_file(gateway, token, dataset, path, check.media_type, session)
    except requests.RequestException as error:
        print(_("civicnet push: could not reach the gateway at {gateway}: {error}").format(
            gateway=gateway, error=error), file=err)
        return EXIT_GATEWAY
    if answer.status_code not in (200, 202):
        print(_("civicnet push: the gateway refused the file (HTTP {status}): {error}").format(
            status=answer.status_code, error=gateway_error(answer)), file=err)
        return EXIT_GATEWAY
    receipt = answer.json()
    print(json.dumps(receipt, ensure_ascii=False, indent=1), file=out)
    if not report:
        return EXIT_SENT
    try:
        status = wait_for_verdict(gateway, token, receipt["status_url"], wait, session)
    except requests.RequestException as error:
        print(_("civicnet push: sent, but the status could not be read: {error}").format(error=error), file=err)
        return EXIT_GATEWAY
    print(_verdict_text(gateway, token, status, err, session, lang), file=out)
    if status["status"] not in FINAL:
        print(_("civicnet push: no verdict within {wait} s; ask again at {url}").format(
            wait=f"{wait:g}", url=receipt["status_url"]), file=err)
        return EXIT_TIMEOUT
    return EXIT_SENT
