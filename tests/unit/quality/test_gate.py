"""The quality gate: a clean batch passes; each broken rule fails it, naming the expectation."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quality.conform import LINE
from quality.gate import RESULTS_FILE, BatchSummary, run_gate
from quality.rejection import gate_sentence
from quality.rules import RULES, UnknownRuleError
from quality.rules import rule as rule_by_code
from quality.suite import MAX_QUARANTINE_SHARE
from quality.verdict import GateResult
from schemas.citizen_id import check_char
from schemas.contract import Contract, load_contracts
from schemas.derive import arrow_schema

CONTRACTS = load_contracts()
RESIDENTS, FACILITIES = CONTRACTS["residents"], CONTRACTS["facilities"]
BINJIANG = "440304001018"


def make_resident(n: int, **overrides: Any) -> dict[str, Any]:
    first17 = f"44030419900101{n:03d}"
    row = {"citizen_id": first17 + check_char(first17), "name": "张三", "sex": "1",
           "birth_date": dt.date(1990, 1, 1), "residence_type": "registered",
           "household_id": f"H{n:06d}", "address": "滨江路1号", "phone": "13800000000",
           "division_code": BINJIANG, "moved_in_date": dt.date(2010, 5, 1), "status": "active",
           "vintage": 2020}
    return row | overrides


def make_facility(n: int, **overrides: Any) -> dict[str, Any]:
    row = {"facility_id": f"F{BINJIANG}{n:03d}", "division_code": BINJIANG,
           "facility_type": "library", "name": "滨江社区图书室", "floor_area_m2": 120.0,
           "address": "滨江路2号", "opening_date": dt.date(2008, 3, 1), "vintage": 2020}
    return row | overrides


def make_batch(contract: Contract, rows: list[dict[str, Any]]) -> pa.Table:
    """A conformed batch as conform_batch returns it: contract types plus `_line` (all nullable,
    so that a test can plant a null where the contract forbids one)."""
    schema = pa.schema([pa.field(f.name, f.type) for f in arrow_schema(contract)])
    table = pa.Table.from_pylist(rows, schema=schema)
    return table.append_column(LINE, pa.array(range(1, len(rows) + 1), pa.int64()))


def failed(result: GateResult) -> set[tuple[str, str | None]]:
    return {(r.expectation, r.description if r.expectation == "unexpected_rows_expectation" else r.column)
            for r in result.results if not r.success}


TODAY = "2021-06-30"


def gate(tmp_path: Path, contract: Contract, rows: list[dict[str, Any]], summary: BatchSummary | None = None,
         full: bool = False) -> GateResult:
    """Run the gate the way pipeline.check does: accepted.parquet in a staging folder."""
    stage = tmp_path / "stage"
    stage.mkdir(exist_ok=True)
    pq.write_table(make_batch(contract, rows).drop([LINE]), stage / "accepted.parquet")
    summary = summary or BatchSummary(len(rows), 0, 0, None)
    return run_gate(contract, stage, summary, TODAY, full_delivery=full)


def test_clean_residents_batch_passes(tmp_path: Path) -> None:
    result = gate(tmp_path, RESIDENTS, [make_resident(i) for i in range(5)])
    assert result.verdict == "pass", [r for r in result.results if not r.success]
    checked = {(r.expectation, r.column) for r in result.results}
    assert ("expect_column_values_to_be_unique", "citizen_id") in checked
    assert ("expect_column_values_to_be_in_set", "sex") in checked
    assert ("expect_column_values_to_not_be_null", "household_id") in checked
    assert ("expect_column_values_to_be_in_type_list", "birth_date") in checked
    assert ("expect_column_values_to_be_valid_citizen_id", "citizen_id") in checked
    assert ("expect_column_pair_values_to_be_division_of_vintage", "division_code") in checked
    assert ("expect_column_values_to_be_between", "quarantined_share") in checked
    assert all(r.exception is None for r in result.results)
    assert json.loads((tmp_path / "stage" / RESULTS_FILE).read_text("utf-8"))[0]["success"] is True


def test_a_stage_in_a_folder_with_quotes_passes(tmp_path: Path) -> None:
    home = tmp_path / "o'neil \"home\""
    home.mkdir()
    assert gate(home, FACILITIES, [make_facility(1), make_facility(2)]).verdict == "pass"


def test_clean_facilities_batch_passes(tmp_path: Path) -> None:
    result = gate(tmp_path, FACILITIES, [make_facility(i, floor_area_m2=float(50 + i)) for i in range(4)])
    assert result.verdict == "pass"
    assert ("expect_column_values_to_be_between", "floor_area_m2") in {
        (r.expectation, r.column) for r in result.results}


BAD_ID = "440304199001010071"  # the check character should be 0
BROKEN = {
    "duplicate-primary-key": (RESIDENTS, [make_resident(1), make_resident(2), make_resident(1)],
                              ("expect_column_values_to_be_unique", "citizen_id")),
    "null-required-field": (RESIDENTS, [make_resident(1), make_resident(2, name=None)],
                            ("expect_column_values_to_not_be_null", "name")),
    "outside-code-list": (RESIDENTS, [make_resident(1), make_resident(2, sex="9")],
                          ("expect_column_values_to_be_in_set", "sex")),
    "status-outside-code-list": (RESIDENTS, [make_resident(1, status="正常")],
                                 ("expect_column_values_to_be_in_set", "status")),
    "citizen-id-check-digit": (RESIDENTS, [make_resident(1), make_resident(2, citizen_id=BAD_ID)],
                               ("expect_column_values_to_be_valid_citizen_id", "citizen_id")),
    "citizen-id-born-on-30-february": (RESIDENTS, [make_resident(2, citizen_id="44030419900230" + "001" +
                                                                 check_char("44030419900230001"))],
                                       ("expect_column_values_to_be_valid_citizen_id", "citizen_id")),
    "division-not-in-vintage": (RESIDENTS, [make_resident(1, division_code="440304001999")],
                                ("expect_column_pair_values_to_be_division_of_vintage", "division_code")),
    "division-of-the-wrong-tier": (RESIDENTS, [make_resident(1, division_code="440304001000")],
                                   ("expect_column_pair_values_to_be_division_of_vintage", "division_code")),
    "division-of-another-vintage": (RESIDENTS, [make_resident(1, vintage=2019)],
                                    ("expect_column_pair_values_to_be_division_of_vintage", "division_code")),
    "anchor-not-12-digits": (RESIDENTS, [make_resident(1, division_code="4403041")],
                             ("expect_column_values_to_match_regex", "division_code")),
    "name-too-long": (RESIDENTS, [make_resident(1, name="张" * 51)],
                      ("expect_column_value_lengths_to_be_between", "name")),
    "birth-date-in-future": (RESIDENTS, [make_resident(1, birth_date=dt.date(2022, 1, 1),
                                                      moved_in_date=dt.date(2022, 2, 1))],
                             ("unexpected_rows_expectation", "dataset rule birth_date_in_future")),
    "floor-area-below-minimum": (FACILITIES, [make_facility(1), make_facility(2, floor_area_m2=0.5)],
                                 ("expect_column_values_to_be_between", "floor_area_m2")),
    "floor-area-above-maximum": (FACILITIES, [make_facility(1, floor_area_m2=250000.0)],
                                 ("expect_column_values_to_be_between", "floor_area_m2")),
    "facility-type-outside-code-list": (FACILITIES, [make_facility(1, facility_type="gym")],
                                        ("expect_column_values_to_be_in_set", "facility_type")),
    "empty-batch": (RESIDENTS, [], ("expect_table_row_count_to_be_between", None)),
}


@pytest.mark.parametrize(("contract", "rows", "expected"), list(BROKEN.values()), ids=list(BROKEN))
def test_broken_batch_fails_naming_the_expectation(tmp_path: Path, contract: Contract, rows: list[dict[str, Any]],
                                                   expected: tuple[str, str | None]) -> None:
    result = gate(tmp_path, contract, rows)
    assert result.verdict == "fail"
    errors = {f for f in failed(result) if f[0] != "expect_column_values_to_be_between" or f[1] == expected[1]}
    assert expected in errors
    assert all(r.severity == "error" for r in result.failed("error"))
    assert all(r.exception is None for r in result.results), [r.exception for r in result.results]


def test_warn_rule_is_reported_and_the_batch_passes_with_a_warning(tmp_path: Path) -> None:
    result = gate(tmp_path, FACILITIES, [make_facility(1), make_facility(2, floor_area_m2=30000.0)])
    assert result.verdict == "warn"
    (warning,) = result.failed("warn")
    assert warning.description == "dataset rule floor_area_implausibly_large"
    assert "1 rows" in gate_sentence(warning, {"received": 2, "quarantined": 0}, "en")


def test_quarantine_share_above_the_maximum_fails(tmp_path: Path) -> None:
    result = gate(tmp_path, RESIDENTS, [make_resident(i) for i in range(94)], BatchSummary(100, 6, 0, None))
    assert MAX_QUARANTINE_SHARE < 0.06
    assert failed(result) == {("expect_column_values_to_be_between", "quarantined_share")}
    assert result.verdict == "fail"


def test_quarantine_share_at_the_maximum_passes(tmp_path: Path) -> None:
    quarantined = round(MAX_QUARANTINE_SHARE * 100)
    result = gate(tmp_path, RESIDENTS, [make_resident(i) for i in range(100 - quarantined)],
                  BatchSummary(100, quarantined, 0, None))
    assert result.verdict == "pass"


def test_a_broken_key_refuses_the_batch(tmp_path: Path) -> None:
    summary = BatchSummary(1000, 2, 2, None)  # two rows of a thousand repeat a key: 0.2 %
    result = gate(tmp_path, RESIDENTS, [make_resident(i) for i in range(5)], summary)
    assert failed(result) == {("expect_column_values_to_be_between", "broken_key_share")}
    (failure,) = result.failed("error")
    assert "key column is broken" in gate_sentence(failure, {"received": summary.received,
                                                             "quarantined": summary.quarantined}, "en")


@pytest.mark.parametrize(("ratio", "verdict"), [(0.02, "fail"), (0.3, "warn"), (1.0, "pass"), (None, "pass")])
def test_volume_against_recent_batches(tmp_path: Path, ratio: float | None, verdict: str) -> None:
    summary = BatchSummary(5, 0, 0, ratio)
    assert gate(tmp_path, RESIDENTS, [make_resident(i) for i in range(5)], summary, full=True).verdict == verdict
    # a feed that sends only changes has no usual volume: the same batch passes
    assert gate(tmp_path, RESIDENTS, [make_resident(i) for i in range(5)], summary, full=False).verdict == "pass"


def test_result_is_json_ready(tmp_path: Path) -> None:
    result = gate(tmp_path, RESIDENTS, [make_resident(1), make_resident(1)])
    again = json.loads(json.dumps(result.to_dict()))
    assert again["verdict"] == "fail"
    assert len(again["results"]) == len(result.results)


def test_every_dataset_rule_names_a_field_of_its_contract() -> None:
    for rule in RULES:
        assert rule.dataset in CONTRACTS, rule.code
        CONTRACTS[rule.dataset].field(rule.field)


def test_an_unknown_rule_code_is_a_terminal_error_naming_the_known_ones() -> None:
    with pytest.raises(UnknownRuleError, match=f"no dataset rule 'no_such_rule'; known: .*{RULES[0].code}"):
        rule_by_code("no_such_rule")
