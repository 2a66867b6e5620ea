"""The contract suites run push-down in PostgreSQL too, with the same verdicts as in DuckDB.

A residents batch with one row of each kind the suite must catch is loaded into a real
PostgreSQL table and into a DuckDB file; GX validates both in place (no rows fetched into
pandas) and must flag the same expectations with the same unexpected counts.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlalchemy as sa

from quality.gate import validate_table
from quality.suite import contract_expectations
from quality.verdict import ExpectationOutcome, Scalar
from schemas.citizen_id import check_char
from schemas.contract import load_contracts

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
RESIDENTS = load_contracts()["residents"]
BINJIANG = "440304001018"
PG_TYPES = {"string": "TEXT", "integer": "BIGINT", "number": "DOUBLE PRECISION", "date": "DATE"}
DUCK_TYPES = {"string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "date": "DATE"}


def resident(n: int, **overrides: Any) -> dict[str, Any]:
    first17 = f"44030419900101{n:03d}"
    row = {"citizen_id": first17 + check_char(first17), "name": "张三", "sex": "1",
           "birth_date": dt.date(1990, 1, 1), "residence_type": "registered", "household_id": f"H{n:06d}",
           "address": "滨江路1号", "phone": "13800000000", "division_code": BINJIANG,
           "moved_in_date": dt.date(2010, 5, 1), "status": "active", "vintage": 2020}
    return row | overrides


ROWS = [resident(i) for i in range(1, 21)] + [
    resident(21, citizen_id="440304199001010211"),                       # wrong check character
    resident(22, division_code="440304001999"),                          # not a 2020 community
    resident(23, division_code="440304001000"),                          # a street, not a community
    resident(24, sex="9"),                                               # outside the code list
    resident(25, phone="12345"),                                         # pattern
    resident(26, birth_date=dt.date(2030, 1, 1), moved_in_date=dt.date(2031, 1, 1)),  # rule: future birth
    resident(27, birth_date=dt.date(1890, 1, 1)),                        # warn rule: over 120 years
]
EXPECTED = {  # (expectation, column or rule) → unexpected rows
    ("expect_column_values_to_be_valid_citizen_id", "citizen_id"): 1,
    ("expect_column_pair_values_to_be_division_of_vintage", "division_code"): 2,
    ("expect_column_values_to_be_in_set", "sex"): 1,
    ("expect_column_values_to_match_regex", "phone"): 1,
    ("unexpected_rows_expectation", "dataset rule birth_date_in_future"): 1,
    ("unexpected_rows_expectation", "dataset rule moved_in_date_in_future"): 1,  # row 26 moved in 2031
    ("unexpected_rows_expectation", "dataset rule birth_date_implausibly_old"): 1,
}


def _create_sql(name: str, types: dict[str, str]) -> str:
    cols = ", ".join(f'"{f.name}" {types[f.type]}' for f in RESIDENTS.fields)
    return f'CREATE TABLE "{name}" ({cols})'


@pytest.fixture
def pg_table() -> Iterator[str]:
    name = f"gate_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(PG_URL)
    with engine.begin() as con:
        con.execute(sa.text(_create_sql(name, PG_TYPES)))
        con.execute(sa.text(f'INSERT INTO "{name}" VALUES ({", ".join(":" + f for f in RESIDENTS.field_names)})'),
                    ROWS)
    try:
        yield name
    finally:
        with engine.begin() as con:
            con.execute(sa.text(f'DROP TABLE "{name}"'))
        engine.dispose()


@pytest.fixture
def duck_file(tmp_path: Path) -> Path:
    path = tmp_path / "batch.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(_create_sql("accepted", DUCK_TYPES))
        con.executemany(f'INSERT INTO accepted VALUES ({", ".join("?" for _ in RESIDENTS.fields)})',
                        [[r[f] for f in RESIDENTS.field_names] for r in ROWS])
    return path


def _failures(rows: Iterable[ExpectationOutcome]) -> dict[tuple[str, str | None], Scalar]:
    out: dict[tuple[str, str | None], Scalar] = {}
    for r in rows:
        assert r.exception is None, r
        if not r.success:
            what = r.description if r.expectation == "unexpected_rows_expectation" else r.column
            count = r.unexpected_count if r.unexpected_count is not None else r.observed_value
            out[(r.expectation, what)] = count
    return out


def test_the_contract_suite_runs_in_postgresql_and_duckdb_alike(pg_table: str, duck_file: Path) -> None:
    suite = contract_expectations(RESIDENTS, "2021-06-30")
    in_postgres, _ = validate_table(PG_URL, pg_table, "pg", suite)
    in_duckdb, _ = validate_table(f"duckdb:///{duck_file}", "accepted", "duck", contract_expectations(
        RESIDENTS, "2021-06-30"))
    assert _failures(in_postgres) == EXPECTED
    assert _failures(in_duckdb) == EXPECTED
    severities = {r.description: r.severity for r in in_postgres if r.description}
    assert severities["dataset rule birth_date_implausibly_old"] == "warn"
    assert severities["dataset rule birth_date_in_future"] == "error"
