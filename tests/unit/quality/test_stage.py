"""The checked batch on disk: check.json's format, publishing a check whole (check.json last), and
reading a check and its rows back; the gate's part of the record and the refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from quality.conform import QUARANTINE_SCHEMA
from quality.stage import (
    QualityGateFailedError,
    StagedCheck,
    accepted_rows,
    gate_record,
    quarantined_rows,
    raise_for_gate,
    read_check,
    stage_dir,
    stage_dirs,
    staged_check,
    unreadable_error,
    write_check,
    write_rows,
)
from quality.verdict import ExpectationOutcome, GateResult, Severity

BATCH = "ab" * 32


def make_check(**overrides: Any) -> StagedCheck:
    fields: dict[str, Any] = {"batch_id": BATCH, "feed": "civil_affairs_facilities", "dataset": "facilities",
                              "received": 5, "accepted": 3, "quarantined": 1, "duplicates": 1,
                              "gate": {"verdict": "pass", "results": [], "warnings": []},
                              "seconds": {"conform": 0.5, "gate": 1.25}}
    return StagedCheck(**(fields | overrides))


def make_result(expectation: str, column: str, severity: Severity, success: bool) -> ExpectationOutcome:
    return ExpectationOutcome(expectation, column, severity, success, unexpected_count=2)


def test_check_json_keeps_its_format_on_disk() -> None:
    check = make_check()
    written = {"batch_id": BATCH, "feed": "civil_affairs_facilities", "dataset": "facilities", "received": 5,
               "accepted": 3, "quarantined": 1, "duplicates": 1,
               "gate": {"verdict": "pass", "results": [], "warnings": []}, "seconds": {"conform": 0.5, "gate": 1.25}}
    assert check.to_json() == json.dumps(written, ensure_ascii=False, indent=2)
    assert StagedCheck.from_json(check.to_json()) == check


def test_a_batch_refused_unchecked_holds_every_row_and_has_no_seconds() -> None:
    refused = StagedCheck.refused(BATCH, "f", "facilities", 7, "缺少列 floor_area_m2")
    assert json.loads(refused.to_json()) == {
        "batch_id": BATCH, "feed": "f", "dataset": "facilities", "received": 7, "accepted": 0, "quarantined": 0,
        "duplicates": 0, "gate": {"verdict": "fail", "error": "缺少列 floor_area_m2", "results": []}}
    assert '"缺少列' in refused.to_json()  # written as UTF-8 text, not \u escapes
    assert (refused.verdict, refused.error) == ("fail", "缺少列 floor_area_m2")
    assert StagedCheck.from_json(refused.to_json()) == refused


def test_gate_record_joins_refusals_and_lists_warnings() -> None:
    results = [make_result("expect_column_values_to_not_be_null", "name", "error", False),
               make_result("expect_column_values_to_be_unique", "facility_id", "error", False),
               make_result("expect_column_values_to_be_between", "floor_area_m2", "warn", False),
               make_result("expect_column_values_to_be_in_set", "facility_type", "error", True)]
    record = gate_record(GateResult("fail", tuple(results)), 10, 0)
    assert list(record) == ["verdict", "results", "error", "warnings"]
    assert record["results"] == [r.to_dict() for r in results] and record["error"].count("; ") == 1
    assert len(record["warnings"]) == 1 and "floor_area_m2" in record["warnings"][0]
    passed = gate_record(GateResult("pass", tuple(results[3:])), 10, 0)
    assert passed == {"verdict": "pass", "results": [r.to_dict() for r in results[3:]], "warnings": []}


def test_a_failed_gate_is_raised_naming_the_check_file(tmp_path: Path) -> None:
    raise_for_gate(make_check(), tmp_path)  # a pass raises nothing
    failed = make_check(gate={"verdict": "fail", "error": "名称为空", "results": []})
    with pytest.raises(QualityGateFailedError, match="failed the quality gate: 名称为空") as err:
        raise_for_gate(failed, tmp_path)
    assert str(tmp_path / "check.json") in str(err.value)


def test_an_unreadable_batch_error_names_the_file_and_who_is_told() -> None:
    err = unreadable_error(BATCH, "drop", "居民.csv", "file is cut off", "public_security")
    assert "(居民.csv) is unreadable and refused: file is cut off" in str(err)
    assert "public_security's outbox" in str(err)


def rows(n: int) -> pa.Table:
    return pa.table({"facility_id": [f"F{i}" for i in range(n)], "_line": list(range(1, n + 1))})


def test_a_check_is_published_whole_with_its_rows(tmp_path: Path) -> None:
    stage = stage_dir(tmp_path, BATCH)
    assert stage == tmp_path / "staging" / BATCH and read_check(stage) is None and stage_dirs(tmp_path) == []
    with staged_check(stage) as work:
        write_rows(work, rows(3), QUARANTINE_SCHEMA.empty_table())
        write_check(work, make_check())
        assert read_check(stage) is None  # nothing is visible before the check ends
    assert read_check(stage) == make_check()
    assert accepted_rows(stage).num_rows == 3
    held = quarantined_rows(stage)
    assert held is not None and held.schema == QUARANTINE_SCHEMA
    assert sorted(p.name for p in stage.iterdir()) == [".lock", "accepted.parquet", "check.json",
                                                       "quarantined.parquet"]
    assert stage_dirs(tmp_path) == [stage]


def test_a_later_check_replaces_the_earlier_one_and_its_stale_files(tmp_path: Path) -> None:
    stage = stage_dir(tmp_path, BATCH)
    with staged_check(stage) as work:
        write_rows(work, rows(3), QUARANTINE_SCHEMA.empty_table())
        write_check(work, make_check())
    refused = StagedCheck.refused(BATCH, "f", "facilities", 5, "unreadable")
    with staged_check(stage) as work:
        write_check(work, refused)
    assert read_check(stage) == refused
    assert quarantined_rows(stage) is None  # no row was checked this time
    assert sorted(p.name for p in stage.iterdir()) == [".lock", "check.json"]


def test_a_check_that_wrote_no_record_publishes_nothing(tmp_path: Path) -> None:
    stage = stage_dir(tmp_path, BATCH)
    with staged_check(stage) as work:
        write_rows(work, rows(3), QUARANTINE_SCHEMA.empty_table())
        write_check(work, make_check())
    with pytest.raises(RuntimeError), staged_check(stage) as work:
        write_rows(work, rows(1), QUARANTINE_SCHEMA.empty_table())
        raise RuntimeError("killed half-way")
    assert read_check(stage) == make_check() and accepted_rows(stage).num_rows == 3
    assert not [p for p in stage.iterdir() if p.name.startswith(".check-")]
