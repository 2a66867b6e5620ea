"""The two small encodings every package shares: a compound key as one text value (schemas.derive)
and a community work station as a sender department (schemas.rights)."""

from __future__ import annotations

import dataclasses

import duckdb
import pytest

from schemas.contract import load_contracts
from schemas.derive import (
    KEY_SEPARATOR,
    display_key,
    display_key_sql,
    key_parts,
    key_sql,
    key_text,
)
from schemas.divisions import InvalidDivisionCodeError
from schemas.rights import community_department, community_of

FACILITIES = load_contracts()["facilities"]
COMPOUND = dataclasses.replace(FACILITIES, primary_key=("division_code", "facility_id", "opened_on"))
COMMUNITY = "440304001001"


@pytest.mark.parametrize("parts", [["F001"], ["440304001001", "F001"], ["a", "", "c"]],
                         ids=["single", "compound", "empty-part"])
def test_a_key_splits_back_into_its_parts(parts: list[str]) -> None:
    assert key_parts(key_text(parts)) == parts


def test_key_sql_builds_the_key_text_and_display_key_sql_the_display() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (division_code VARCHAR, facility_id VARCHAR, opened_on DATE)")
    con.execute("INSERT INTO t VALUES ('440304001001', 'F001', DATE '2010-01-02')")
    key, shown = con.execute(f"SELECT {key_sql(COMPOUND, 't')}, {display_key_sql(key_sql(COMPOUND, 't'))} "
                             "FROM t").fetchone() or (None, None)

    assert key == key_text(["440304001001", "F001", "2010-01-02"]) and KEY_SEPARATOR in key
    assert shown == display_key(key) == "440304001001 | F001 | 2010-01-02"


def test_a_single_key_is_its_value_and_no_key_displays_as_nothing() -> None:
    assert key_sql(FACILITIES, "t") == 'CAST(t."facility_id" AS VARCHAR)'
    assert display_key("F001") == "F001" and display_key(None) == ""


def test_a_community_department_names_its_community_and_back() -> None:
    department = community_department(COMMUNITY)

    assert department == f"community:{COMMUNITY}"
    assert community_of(department) == COMMUNITY


@pytest.mark.parametrize("department", ["civil_affairs", "community:", "communities:440304001001"])
def test_another_department_has_no_community(department: str) -> None:
    assert community_of(department) is None


def test_a_community_department_needs_a_division_code() -> None:
    with pytest.raises(InvalidDivisionCodeError):
        community_department("4403")
