"""Rejection reports built from a hand-made city node: refused and applied batches, CSV for Excel,
the outbox folder (and names that would escape it)."""

from __future__ import annotations

import csv
import io
import json
import stat
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
import pytest

from quality.conform import SourceMapping
from quality.reasons import MESSAGES, translated_message
from quality.rejection import (
    OutboxPathError,
    RejectionReport,
    UndecidedBatchError,
    gate_sentence,
    to_csv,
    to_json,
    to_text,
    write_outbox,
)
from quality.rejection import build_report as build_report_in
from quality.verdict import ExpectationOutcome
from schemas.contract import load_contracts
from schemas.csvsafe import is_formula
from schemas.divisions import load_registry
from warehouse.node import attach, connect, ensure_node
from warehouse.stores import node_path

DATASET = "community_expenditures"
CITY = load_registry(2020).root().code
COMMUNITY = load_registry(2020).by_tier("community")[0].code
MAPPING = SourceMapping(DATASET, {"支出编号": "expenditure_id", "社区代码": "division_code", "年度": "year",
                                  "季度": "quarter", "支出类别": "category", "金额": "amount_yuan", "说明": "note"})
REFUSED, APPLIED, CLEAN = "a1" * 32, "b2" * 32, "c3" * 32


def build_report(*args: Any, lang: str = "en", **kwargs: Any) -> RejectionReport:
    """A report in English unless asked (these tests read its English words; zh-CN, the default, has its tests)."""
    return build_report_in(*args, lang=lang, **kwargs)


@dataclass(frozen=True)
class Origin:
    """The part of a landing manifest the report reads."""

    sender: str | None = None


def raw_row(expenditure: str, amount: object = 100, category: str = "活动") -> dict[str, Any]:
    return {"支出编号": expenditure, "社区代码": COMMUNITY, "年度": "2021", "季度": "2", "支出类别": category,
            "金额": amount, "说明": "=HYPERLINK(\"x\")"}


def reason(code: str, field: str, message: str) -> dict[str, str]:
    return {"code": code, "field": field, "message": message}


def decide(con: duckdb.DuckDBPyConnection, batch_id: str, status: str, counts: dict[str, int],
           gate: dict[str, Any], rows: list[tuple[int, list[dict[str, str]], dict[str, Any] | None]] = (),
           department: str = "civil_affairs") -> None:
    """A ledger row and its quarantined rows, as the merge writes them (columns by name)."""
    con.execute("""INSERT INTO city._civicnet.batches (batch_id, seq, dataset, feed, department, source_name,
                   received_at, decided_at, status, received, applied, unchanged, quarantined, duplicates,
                   moved, held, gate, deleted)
                   VALUES (?, NULL, ?, ?, ?, '支出.csv', '2021-06-30 10:00:00+08', '2021-06-30 10:05:00+08', ?,
                           ?, ?, 0, ?, ?, 0, ?, ?, 0)""",
                [batch_id, DATASET, DATASET, department, status, counts["received"], counts["applied"],
                 counts["quarantined"], counts["duplicates"], counts["held"], json.dumps(gate)])
    for line, reasons, raw in rows:
        key = (raw or {}).get("支出编号") or None  # conform keeps the key it typed; an empty one is none
        con.execute("""INSERT INTO city._civicnet.quarantine (batch_id, dataset, feed, department, line, reasons,
                       raw, key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                    [batch_id, DATASET, DATASET, department, line, reasons, json.dumps(raw, ensure_ascii=False), key])


def result(expectation: str, column: str | None, severity: str = "error", unexpected: int | None = None,
           success: bool = False) -> dict[str, Any]:
    return {"expectation": expectation, "column": column, "severity": severity, "success": success,
            "unexpected_count": unexpected, "observed_value": None, "exception": None}


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = connect()
    attach(connection, node_path(tmp_path, CITY), "city")
    ensure_node(connection, "city", CITY, list(load_contracts().values()))
    decide(connection, REFUSED, "refused", {"received": 10, "applied": 0, "quarantined": 2, "duplicates": 1,
                                           "held": 7},
           {"verdict": "fail", "results": [
               result("expect_column_values_to_be_unique", "expenditure_id", unexpected=2),
               result("expect_column_values_to_be_between", "quarantined_share"),
               result("expect_column_values_to_not_be_null", "note", severity="warn", unexpected=3),
               result("expect_column_values_to_be_in_set", "category", success=True)]},
           [(4, [reason("invalid_number", "amount_yuan", "金额 (amount_yuan) 'abc' is not a number")],
             raw_row("E4", "abc")),
            (9, [reason("not_in_code_list", "category", "支出类别 (category) '旅游' is not in the code list")],
             raw_row("E9", category="旅游"))])
    decide(connection, APPLIED, "applied", {"received": 5, "applied": 3, "quarantined": 2, "duplicates": 0,
                                           "held": 0},
           {"verdict": "pass", "results": [result("expect_column_values_to_be_unique", "expenditure_id",
                                                  success=True)]},
           [(5, [reason("outside_jurisdiction", "division_code", "社区代码 lies outside"),
                 reason("out_of_range", "amount_yuan", "金额 is outside the allowed range")], raw_row("E5", -5)),
            (2, [reason("required_missing", "expenditure_id", "支出编号 is empty")], raw_row("", 7))],
           department=f"community:{COMMUNITY}")
    decide(connection, CLEAN, "applied", {"received": 3, "applied": 3, "quarantined": 0, "duplicates": 0,
                                         "held": 0}, {"verdict": "pass", "results": []})
    yield connection
    connection.close()


def test_refused_batch_says_why_and_keeps_the_rows(con: duckdb.DuckDBPyConnection) -> None:
    report = build_report(con, "city", REFUSED, Origin(), MAPPING)

    assert (report.status, report.verdict, report.sender, report.recipient) == \
        ("refused", "fail", None, "civil_affairs")
    assert report.counts == {"received": 10, "applied": 0, "quarantined": 2, "duplicates": 1, "held": 7}
    assert report.balanced and report.needs_return
    assert report.refusal == ("2 rows repeat a value of the key expenditure_id; each record must appear once",
                              "2 of 10 rows (20.0%) failed the row checks, more than the gate accepts in one "
                              "batch: the file as a whole looks wrong")
    assert report.warnings == ("3 rows have no note, which is required",)
    assert [(r.line, r.key, [x.code for x in r.reasons]) for r in report.rows] == \
        [(4, "E4", ["invalid_number"]), (9, "E9", ["not_in_code_list"])]
    assert report.rows[0].reasons[0].value == "abc"
    assert report.received_at == "2021-06-30T02:00:00.000000Z"
    assert "Nothing of this batch was applied" in report.what_to_do and "7 clean rows" in report.what_to_do


def test_refused_before_any_row_was_checked_carries_the_gate_error(con: duckdb.DuckDBPyConnection) -> None:
    batch_id = "d4" * 32
    decide(con, batch_id, "refused", {"received": 3, "applied": 0, "quarantined": 0, "duplicates": 0, "held": 3},
           {"verdict": "fail", "error": "Feed 'community_expenditures' sent columns ['编号']; missing ['支出编号']",
            "results": []})

    report = build_report(con, "city", batch_id, Origin("station"))

    assert report.refusal == ("Feed 'community_expenditures' sent columns ['编号']; missing ['支出编号']",)
    assert (report.rows, report.recipient, report.needs_return) == ((), "station", True)


def test_applied_batch_lists_each_quarantined_row_by_line(con: duckdb.DuckDBPyConnection) -> None:
    report = build_report(con, "city", APPLIED, Origin("station"), MAPPING)

    assert (report.status, report.refusal, report.warnings, report.balanced) == ("applied", (), (), True)
    first, second = report.rows
    assert (first.line, first.key, first.reasons[0].value) == (2, None, "")  # an empty key gives no key
    assert (second.line, second.key) == (5, "E5")
    assert [(r.code, r.field, r.value) for r in second.reasons] == \
        [("outside_jurisdiction", "division_code", COMMUNITY), ("out_of_range", "amount_yuan", "-5")]
    assert second.raw == raw_row("E5", -5)
    assert set(report.by_reason) == {("outside_jurisdiction", "division_code", 1),
                                     ("out_of_range", "amount_yuan", 1), ("required_missing", "expenditure_id", 1)}
    assert "3 rows were applied" in report.what_to_do and "releases the rows" in report.what_to_do


def test_key_and_release_come_from_the_quarantine_when_it_has_them(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("""UPDATE city._civicnet.quarantine SET key = 'K' || line, released_by = ?,
                   released_at = '2021-07-01 08:00:00+08' WHERE line = 5""", [CLEAN])
    con.execute("UPDATE city._civicnet.batches SET released = 1 WHERE batch_id = ?", [CLEAN])

    rows = build_report(con, "city", APPLIED, Origin("station"), MAPPING).rows
    resubmission = build_report(con, "city", CLEAN, Origin("station"), MAPPING)

    assert [(r.line, r.key, r.released_by, r.released_at) for r in rows] == \
        [(2, None, None, None), (5, "K5", CLEAN, "2021-07-01T00:00:00.000000Z")]
    assert f"[released by batch {CLEAN}]" in to_text(build_report(con, "city", APPLIED, Origin(), MAPPING))
    assert resubmission.released == 1
    assert "released: 1 quarantined rows of earlier batches" in to_text(resubmission)


def test_a_clean_batch_needs_no_report(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    report = build_report(con, "city", CLEAN, Origin())

    assert not report.needs_return
    assert write_outbox(tmp_path, report) == []
    assert not (tmp_path / "outbox").exists()


def test_unbalanced_counts_are_flagged(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("UPDATE city._civicnet.batches SET received = 6 WHERE batch_id = ?", [APPLIED])

    rebuilt = build_report(con, "city", APPLIED, Origin(), MAPPING)

    assert not rebuilt.balanced
    assert "UNBALANCED" in to_text(rebuilt)
    assert "UNBALANCED" not in to_text(build_report(con, "city", REFUSED, Origin(), MAPPING))


def test_undecided_batch_has_no_report(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(UndecidedBatchError, match="no decision"):
        build_report(con, "city", "e5" * 32, Origin())


def test_csv_has_a_bom_and_one_line_per_row_and_reason(con: duckdb.DuckDBPyConnection) -> None:
    text = to_csv(build_report(con, "city", APPLIED, Origin("station"), MAPPING))

    assert text.startswith("\ufeffline,key,field,code,message,value")
    lines = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert [line[:4] for line in lines[1:]] == [["2", "", "expenditure_id", "required_missing"],
                                                ["5", "E5", "division_code", "outside_jurisdiction"],
                                                ["5", "E5", "amount_yuan", "out_of_range"]]
    assert lines[3][5] == "-5"  # a negative number stays a number


def test_json_and_text_carry_the_rows(con: duckdb.DuckDBPyConnection) -> None:
    report = build_report(con, "city", REFUSED, Origin(), MAPPING)

    parsed = json.loads(to_json(report))
    text = to_text(report)

    assert [r["line"] for r in parsed["rows"]] == [4, 9] and parsed["needs_return"] is True
    assert parsed["rows"][1]["raw"]["支出类别"] == "旅游"
    assert f"batch {REFUSED} (支出.csv): refused" in text
    assert "received 10, applied 0, quarantined 2, duplicates 1, held 7" in text
    assert "line 9: not_in_code_list (category): 支出类别 (category) '旅游' is not in the code list [key E9]" in text
    assert "refused: 2 rows repeat a value of the key expenditure_id" in text
    assert "warning: 3 rows have no note" in text


def test_outbox_files_are_written_once_and_open_in_excel(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    report = build_report(con, "city", APPLIED, Origin("station"), MAPPING)

    paths = write_outbox(tmp_path, report)
    stamps = [p.stat().st_mtime_ns for p in paths]
    again = write_outbox(tmp_path, report)

    folder = tmp_path / "outbox" / "station" / DATASET
    assert paths == again == [folder / f"{APPLIED}.json", folder / f"{APPLIED}.csv", folder / f"{APPLIED}.txt"]
    assert [p.stat().st_mtime_ns for p in again] == stamps
    assert paths[1].read_bytes().startswith(b"\xef\xbb\xbf")
    assert json.loads(paths[0].read_text("utf-8"))["batch_id"] == APPLIED
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths)  # no temporary files left


def test_department_outbox_when_no_sender(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    paths = write_outbox(tmp_path, build_report(con, "city", REFUSED, Origin(), MAPPING))
    assert paths[0].parent == tmp_path / "outbox" / "civil_affairs" / DATASET


def test_a_formula_in_a_reason_field_is_defused(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("""UPDATE city._civicnet.quarantine SET reasons = [{'code': 'invalid_length', 'field': 'note',
                   'message': 'too long'}] WHERE line = 2""")
    lines = list(csv.reader(io.StringIO(to_csv(build_report(con, "city", APPLIED, Origin(), MAPPING))[1:])))
    assert lines[1][5] == "'=HYPERLINK(\"x\")"


@pytest.mark.parametrize(("who", "dataset", "batch_id"), [
    ("../x", DATASET, APPLIED), ("station", "../x", APPLIED), (".", DATASET, APPLIED), ("a/b", DATASET, APPLIED),
    ("", DATASET, APPLIED), ("station", DATASET, "../" + APPLIED), ("station", DATASET, APPLIED.upper()),
], ids=["sender-dotdot", "dataset-dotdot", "dot", "slash", "empty", "batch-dotdot", "batch-not-lower-hex"])
def test_outbox_refuses_names_that_escape(con: duckdb.DuckDBPyConnection, tmp_path: Path, who: str, dataset: str,
                                          batch_id: str) -> None:
    report: RejectionReport = replace(build_report(con, "city", APPLIED, Origin(), MAPPING),
                                      sender=who or None, department=who, dataset=dataset, batch_id=batch_id)
    with pytest.raises(OutboxPathError):
        write_outbox(tmp_path / "home", report)
    assert not (tmp_path / "home").exists()


def test_a_linked_outbox_folder_may_not_lead_outside(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "home" / "outbox").mkdir(parents=True)
    (tmp_path / "home" / "outbox" / "station").symlink_to(outside)

    with pytest.raises(OutboxPathError, match="outside"):
        write_outbox(tmp_path / "home", build_report(con, "city", APPLIED, Origin("station"), MAPPING))
    assert list(outside.iterdir()) == []


COUNTS = {"received": 40, "applied": 0, "quarantined": 0, "duplicates": 0, "held": 40}


@pytest.mark.parametrize(("failed", "expected"), [
    (result("expect_column_values_to_be_between", "volume_ratio"), "far fewer rows (40) than this dataset's recent"),
    (result("expect_column_values_to_be_between", "volume_ratio", severity="warn"), "check that the file is complete"),
    (result("expect_column_values_to_be_between", "broken_key_share"), "the key column is broken"),
    (result("unexpected_rows_expectation", None, unexpected=2) | {"description": "dataset rule area_positive"},
     "2 rows break the dataset rule area_positive"),
    (result("expect_column_values_to_be_in_set", "category", unexpected=1) | {"partial_unexpected": ["travel"]},
     "1 rows have a category outside its code list (for example: travel)"),
    (result("expect_something_new", "x", unexpected=4), "the check expect_something_new on x failed"),
    (result("expect_column_values_to_be_unique", "id") | {"exception": "connection closed"},
     "could not run: connection closed"),
], ids=["volume-drop", "volume-warn", "broken-key", "dataset-rule", "examples", "unknown", "exception"])
def test_gate_failures_become_sentences(failed: dict[str, Any], expected: str) -> None:
    assert expected in gate_sentence(ExpectationOutcome.from_dict(failed), COUNTS, "en")


DANGEROUS = ["-2+3+cmd|' /C calc'!A0", "+1", "@SUM(A1)", "\t=1", "\r=1", " =1", "＝1+1", "－2+3", "-5"]


def hostile_report(con: duckdb.DuckDBPyConnection) -> RejectionReport:
    """A batch whose keys, notes and amounts are DANGEROUS, each quarantined twice (note and amount)."""
    rows = [(20 + i, [reason("invalid_length", "note", f"{bad} is too long"),
                      reason("invalid_number", "amount_yuan", f"{bad}")],
             raw_row(bad, amount=bad) | {"说明": bad}) for i, bad in enumerate(DANGEROUS)]
    decide(con, "f6" * 32, "applied", {"received": 9, "applied": 0, "quarantined": 9, "duplicates": 0, "held": 0},
           {"verdict": "pass", "results": []}, rows)
    return build_report(con, "city", "f6" * 32, Origin(), MAPPING, load_contracts()[DATASET])


def test_no_cell_of_the_csv_report_would_run_in_a_spreadsheet(con: duckdb.DuckDBPyConnection) -> None:
    """Whatever a sender put in a key, a text value, a number field or (through it) a message, no cell
    of the CSV starts with a character a spreadsheet evaluates, unquoted; a plain number in a number
    field stays a number."""
    lines = list(csv.reader(io.StringIO(to_csv(hostile_report(con)).removeprefix("\ufeff"))))
    assert len(lines) == 1 + 2 * len(DANGEROUS)
    unsafe = [(n, cell) for n, line in enumerate(lines[1:]) for cell in line if is_formula(cell)]
    # only the plain numbers +1 and -5 sent for the amount, a number field, stay numbers
    assert unsafe == [(2 * DANGEROUS.index("+1") + 1, "+1"), (2 * DANGEROUS.index("-5") + 1, "-5")]
    assert [line[1] for line in lines[1::2]] == ["'" + bad for bad in DANGEROUS]  # keys
    assert [line[5] for line in lines[1::2]] == ["'" + bad for bad in DANGEROUS]  # a text field's values
    assert [line[4] for line in lines[2::2]] == ["'" + bad for bad in DANGEROUS]  # messages


def test_the_outbox_csv_file_has_no_cell_a_spreadsheet_would_run(con: duckdb.DuckDBPyConnection,
                                                                  tmp_path: Path) -> None:
    _, csv_path, _ = write_outbox(tmp_path, hostile_report(con))

    lines = list(csv.reader(io.StringIO(csv_path.read_bytes().decode("utf-8-sig"), newline="")))
    assert len(lines) == 1 + 2 * len(DANGEROUS)
    assert [cell for line in lines for cell in line if is_formula(cell)] == ["+1", "-5"]  # amounts: numbers
    assert stat.S_IMODE(csv_path.stat().st_mode) == 0o600  # the rows as sent: personal data


def test_rows_whose_key_another_division_holds_are_not_promised_a_release(con: duckdb.DuckDBPyConnection) -> None:
    taken = "d4" * 32
    decide(con, taken, "applied", {"received": 2, "applied": 1, "quarantined": 1, "duplicates": 0, "held": 0},
           {"verdict": "pass", "results": []},
           [(2, [reason("key_owned_elsewhere", "expenditure_id", "支出编号 'E7' is a current record of 440304001002")],
             raw_row("E7"))], department=f"community:{COMMUNITY}")
    report = build_report(con, "city", taken, Origin("station"), MAPPING)

    assert "1 rows marked key_owned_elsewhere are not released by sending them again" in report.what_to_do
    assert "key_owned_elsewhere" not in build_report(con, "city", APPLIED, Origin("station"), MAPPING).what_to_do
    (row,) = report.rows
    assert [(r.code, r.value) for r in row.reasons] == [("key_owned_elsewhere", "E7")]




def test_the_report_is_in_chinese_by_default_with_stable_codes_and_keys(con: duckdb.DuckDBPyConnection) -> None:
    zh, en = build_report_in(con, "city", APPLIED, Origin("station"), MAPPING), build_report(
        con, "city", APPLIED, Origin("station"), MAPPING)
    assert zh.lang == "zh_CN" and en.lang == "en"
    assert zh.to_dict().keys() == en.to_dict().keys()
    assert [r.code for row in zh.rows for r in row.reasons] == [r.code for row in en.rows for r in row.reasons]
    assert "已入库" in zh.what_to_do and "rows were applied" not in zh.what_to_do
    # this node's hand-made sentences follow no template: they are shown as stored, in both languages
    assert [r.message for row in zh.rows for r in row.reasons] == [r.message for row in en.rows for r in row.reasons]
    text = to_text(zh)
    assert "处理办法：" in text and "what to do:" not in text and "(UTC+8)" in text
    assert "第 " in text and " 行：" in text
    header = next(csv.reader(io.StringIO(to_csv(zh)[1:])))
    assert header[:6] == ["line", "key", "field", "code", "message", "value"]  # machine-readable columns


def test_a_refusal_is_said_in_chinese(con: duckdb.DuckDBPyConnection) -> None:
    report = build_report_in(con, "city", REFUSED, Origin(), MAPPING)
    assert report.refusal and all(not s.startswith("the ") for s in report.refusal)
    assert "本批次未入库" in report.what_to_do


@pytest.mark.parametrize("code", sorted(MESSAGES), ids=sorted(MESSAGES))
def test_each_stored_reason_sentence_is_said_in_chinese(code: str) -> None:
    stored = MESSAGES[code].format(title="金额", field="amount_yuan", value="12'3 (x)",  # type: ignore[index]
                                   owner="440304001002", owner_name="园岭街道红荔社区居委会")
    zh = translated_message(code, stored)
    assert zh != stored and "金额" in zh and "amount_yuan" in zh and ("12'3 (x)" in zh or "{value}" not in
                                                                      MESSAGES[code])  # type: ignore[index]
    assert translated_message(code, stored, "en") == stored
    assert translated_message(code, "a sentence of another form") == "a sentence of another form"


def test_the_owner_of_a_taken_key_is_named_in_chinese_and_nothing_else_of_its_record() -> None:
    stored = MESSAGES["key_owned_elsewhere"].format(title="支出编号", field="expenditure_id", value="E7",
                                                    owner="440304001002", owner_name="园岭街道红荔社区居委会")
    zh = translated_message("key_owned_elsewhere", stored)
    assert "440304001002 园岭街道红荔社区居委会" in zh and "“E7”" in zh and "现有记录" in zh
