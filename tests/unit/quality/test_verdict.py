"""The gate's records: an outcome and a gate read back from the JSON the check record and the ledger keep."""

from __future__ import annotations

import json

from quality.verdict import ExpectationOutcome, GateResult, LedgerGate, ledger_gate, verdict_of

NULLS = ExpectationOutcome("expect_column_values_to_not_be_null", "name", "error", False, unexpected_count=2,
                           partial_unexpected=(None, "x"))
WIDE = ExpectationOutcome("expect_column_values_to_be_between", "floor_area_m2", "warn", False, observed_value=3.5)
UNIQUE = ExpectationOutcome("expect_column_values_to_be_unique", "facility_id", "error", True)


def test_an_outcome_reads_back_what_it_wrote_through_json() -> None:
    for outcome in (NULLS, WIDE, UNIQUE):
        assert ExpectationOutcome.from_dict(json.loads(json.dumps(outcome.to_dict()))) == outcome


def test_a_record_without_severity_counts_as_an_error() -> None:
    old = {"expectation": "expect_column_values_to_be_unique", "column": "id", "success": False}
    assert ExpectationOutcome.from_dict(old).severity == "error"


def test_the_verdict_is_the_worst_failed_severity() -> None:
    assert [verdict_of(r) for r in ((UNIQUE,), (UNIQUE, WIDE), (WIDE, NULLS), ())] == ["pass", "warn", "fail", "pass"]
    gate = GateResult("fail", (NULLS, WIDE, UNIQUE))
    assert (gate.failed("error"), gate.failed("warn")) == ([NULLS], [WIDE])


def test_the_ledger_gate_is_read_from_the_check_records_json() -> None:
    record = GateResult("fail", (NULLS, WIDE, UNIQUE)).to_dict() | {"error": "名称为空", "warnings": ["w"]}
    gate = ledger_gate("b1", "facilities", json.dumps(record, ensure_ascii=False))
    assert gate == LedgerGate("b1", "facilities", "fail", (NULLS, WIDE, UNIQUE), "名称为空", ("w",))
    assert gate.failed == (NULLS, WIDE)
    assert gate.to_dict() == {"batch_id": "b1", "dataset": "facilities", "verdict": "fail", "expectations": 3,
                              "failed": [NULLS.to_dict(), WIDE.to_dict()], "error": "名称为空"}


def test_a_batch_refused_before_the_gate_has_no_verdict() -> None:
    assert ledger_gate("b2", "residents", None) == LedgerGate("b2", "residents", None)
    refused = ledger_gate("b3", "residents", json.dumps({"verdict": "fail", "error": "缺少列", "results": []}))
    assert (refused.verdict, refused.failed, refused.error) == ("fail", (), "缺少列")
