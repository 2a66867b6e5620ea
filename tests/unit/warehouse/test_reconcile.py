"""Control totals on two tiny hand-made nodes: a district and one of its streets, filled by the real
sync, then tampered with by hand. Mediation committees carry a PII field (chair_name) that the
district holds and the street does not."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from schemas.contract import Contract, load_contracts
from schemas.divisions import subtree_prefix, tier_of
from warehouse.node import attach, connect, ensure_node, high_water_marks, set_high_water_marks
from warehouse.reconcile import Mismatch, compare_node, control_totals, node_totals, repair_slices
from warehouse.sync import sync_node

DISTRICT = "440304000000"
STREET = "440304001000"
C1, C2 = "440304001018", "440304001019"  # communities of STREET
ELSEWHERE = "440304002016"  # a community of DISTRICT under another street
CONTRACTS: dict[str, Contract] = load_contracts()
FACILITIES, MEDIATION = CONTRACTS["facilities"], CONTRACTS["mediation_committees"]


def facility(n: int, division: str, area: float) -> tuple[Any, ...]:
    return (f"F{division}{n:03d}", division, "library", f"图书室{n}", area, f"地址{n}", dt.date(2010, 1, n), 2020,
            n, f"h{n}", dt.datetime(2021, 1, 1, tzinfo=dt.UTC), "b1")


def committee(n: int, division: str, chair: str, members: int) -> tuple[Any, ...]:
    return (f"M{division}{n:02d}", division, f"调委会{n}", chair, members, 3 * n, 2020,
            100 + n, f"m{n}", dt.datetime(2021, 1, 1, tzinfo=dt.UTC), "b2")


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """District `p` and street `c` attached, the street synced from the district."""
    con = connect()
    contracts = list(CONTRACTS.values())
    for alias, code in (("p", DISTRICT), ("c", STREET)):
        attach(con, tmp_path / f"{code}.duckdb", alias)
        ensure_node(con, alias, code, contracts)
    rows = [facility(1, C1, 120.5), facility(2, C1, 80.25), facility(3, C2, 200.0), facility(4, ELSEWHERE, 50.0)]
    con.executemany("INSERT INTO p.facilities VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    con.executemany("INSERT INTO p.mediation_committees VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [committee(1, C1, "王芳", 7), committee(2, C2, "陈静", 5)])
    set_high_water_marks(con, "p", {"facilities": 4, "mediation_committees": 102})
    sync_node(con, "c", "p", DISTRICT, STREET, contracts)
    yield con
    con.close()


def compare_street(con: duckdb.DuckDBPyConnection) -> list[Mismatch]:
    """compare_node of the street with the district, fed as the verify walk feeds it: both nodes' marks,
    the district's totals over the street's subtree and the street's totals over all its rows."""
    held = [c for c in CONTRACTS.values() if tier_of(STREET) in c.reaches]
    expected = node_totals(con, "p", held, tier_of(STREET), subtree_prefix(STREET))
    return compare_node(STREET, held, high_water_marks(con, "p"), high_water_marks(con, "c"), expected,
                        node_totals(con, "c", held, tier_of(STREET)))


def compare(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    return sorted((m.dataset, m.division_code, m.what) for m in compare_street(con))


def test_a_synced_street_agrees_with_its_district(con: duckdb.DuckDBPyConnection) -> None:
    assert con.execute("SELECT count(*) FROM c.facilities").fetchall() == [(3,)]  # ELSEWHERE is not its own
    assert compare(con) == []


def test_a_deleted_row_shows_in_rows_measure_and_hash_of_its_division(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DELETE FROM c.facilities WHERE facility_id = ?", [f"F{C1}002"])
    found = compare_street(con)
    assert sorted((m.dataset, m.division_code, m.what) for m in found) == [
        ("facilities", C1, "hash"), ("facilities", C1, "measure:floor_area_m2"), ("facilities", C1, "rows")]
    rows = next(m for m in found if m.what == "rows")
    assert (rows.node, rows.tier, rows.parent, rows.parent_value, rows.child_value) == (STREET, "street", DISTRICT,
                                                                                        "2", "1")
    area = next(m for m in found if m.what.startswith("measure"))
    assert (area.parent_value, area.child_value) == ("200.750000", "120.500000")


def test_a_changed_value_shows_only_in_the_hash(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("UPDATE c.facilities SET name = '改过的名字' WHERE facility_id = ?", [f"F{C2}003"])
    assert compare(con) == [("facilities", C2, "hash")]


def test_a_changed_measure_shows_in_the_measure_and_the_hash(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("UPDATE c.mediation_committees SET members = 8 WHERE division_code = ?", [C1])
    assert compare(con) == [("mediation_committees", C1, "hash"), ("mediation_committees", C1, "measure:members")]


def test_a_row_outside_the_jurisdiction_is_named_by_its_division(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("INSERT INTO c.facilities SELECT * FROM p.facilities WHERE division_code = ?", [ELSEWHERE])
    assert compare(con) == [("facilities", ELSEWHERE, w) for w in ("hash", "measure:floor_area_m2", "rows")]


def test_pii_below_its_tier_is_not_compared(con: duckdb.DuckDBPyConnection) -> None:
    columns = [r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE database_name = 'c' "
                                         "AND table_name = 'mediation_committees'").fetchall()]
    assert "chair_name" not in columns
    # the district's totals over its own fields differ from those over the street's: the PII is hashed there
    district = control_totals(con, "p", MEDIATION, MEDIATION.fields_for_tier("district"), STREET[:9])
    street = control_totals(con, "p", MEDIATION, MEDIATION.fields_for_tier("street"), STREET[:9])
    assert district[C1].hash != street[C1].hash and district[C1].rows == street[C1].rows
    con.execute("UPDATE p.mediation_committees SET chair_name = '李强'")  # nothing the street holds changes
    assert compare(con) == []


def test_totals_ignore_row_order_and_count_a_repeated_row(con: duckdb.DuckDBPyConnection) -> None:
    fields = FACILITIES.fields_for_tier("street")
    before = control_totals(con, "c", FACILITIES, fields)
    con.execute("CREATE TABLE c.shuffled AS SELECT * FROM c.facilities ORDER BY facility_id DESC")
    con.execute("DELETE FROM c.facilities")
    con.execute("INSERT INTO c.facilities SELECT * FROM c.shuffled")
    assert control_totals(con, "c", FACILITIES, fields) == before
    con.execute("INSERT INTO c.facilities SELECT * FROM c.shuffled LIMIT 1")
    after = control_totals(con, "c", FACILITIES, fields)
    assert sum(t.rows for t in after.values()) == 4 and after != before


def test_node_totals_match_control_totals_per_dataset(con: duckdb.DuckDBPyConnection) -> None:
    every = node_totals(con, "p", [FACILITIES, MEDIATION], "street", STREET[:9])
    assert every["facilities"] == control_totals(con, "p", FACILITIES, FACILITIES.fields_for_tier("street"),
                                                 STREET[:9])
    assert set(every["mediation_committees"]) == {C1, C2}


def test_a_node_behind_its_parent_is_reported_behind_not_compared(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("INSERT INTO p.facilities VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", facility(5, C1, 10.0))
    set_high_water_marks(con, "p", {"facilities": 5})
    found = compare_street(con)
    assert [(m.dataset, m.division_code, m.what, m.parent_value, m.child_value) for m in found] == [
        ("facilities", "*", "behind", "5", "4")]


def test_repair_restores_only_the_named_slices(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DELETE FROM c.facilities WHERE facility_id = ?", [f"F{C1}001"])
    con.execute("UPDATE c.facilities SET floor_area_m2 = 1 WHERE division_code = ?", [C2])
    con.execute("INSERT INTO c.facilities SELECT * FROM p.facilities WHERE division_code = ?", [ELSEWHERE])
    repaired = repair_slices(con, "p", "c", STREET, FACILITIES, [C1, ELSEWHERE])
    assert (repaired.removed, repaired.copied, repaired.divisions) == (2, 2, (C1, ELSEWHERE))
    assert compare(con) == [("facilities", C2, "hash"), ("facilities", C2, "measure:floor_area_m2")]  # not asked
    assert con.execute("SELECT floor_area_m2 FROM c.facilities WHERE division_code = ?", [C2]).fetchall() == [(1.0,)]
    repair_slices(con, "p", "c", STREET, FACILITIES, [C2])
    assert compare(con) == []
    restored = con.execute("SELECT facility_id, _seq, _row_hash FROM c.facilities ORDER BY 1").fetchall()
    assert restored == con.execute("SELECT facility_id, _seq, _row_hash FROM p.facilities WHERE division_code <> ? "
                                   "ORDER BY 1", [ELSEWHERE]).fetchall()
    log = con.execute("SELECT parent, dataset, upserts, removed FROM c._civicnet.sync_log WHERE from_seq = to_seq "
                      "ORDER BY upserts").fetchall()
    assert log == [(DISTRICT, "facilities", 1, 1), (DISTRICT, "facilities", 2, 2)]
