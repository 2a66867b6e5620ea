"""Node checksums (what extracts/network.json keeps per node and dataset) hash the row values, as the
control totals of verify do: a node and its parent agree on what "equal" means."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from civicnet import pipeline
from schemas.contract import Contract, load_contracts
from schemas.divisions import subtree_prefix
from warehouse.node import attach, connect, ensure_node, set_high_water_marks
from warehouse.reconcile import node_totals
from warehouse.stats import node_stats
from warehouse.sync import sync_node

DISTRICT, STREET = "440304000000", "440304001000"
C1, ELSEWHERE = "440304001018", "440304002016"  # a community of STREET; one of DISTRICT under another street
CONTRACTS: dict[str, Contract] = load_contracts()
HELD = list(CONTRACTS.values())


def facility(n: int, division: str) -> tuple[Any, ...]:
    return (f"F{division}{n:03d}", division, "library", f"图书室{n}", 100.0 + n, f"地址{n}", dt.date(2010, 1, n), 2020,
            n, f"h{n}", dt.datetime(2021, 1, 1, tzinfo=dt.UTC), "b1")


def committee(n: int, division: str, chair: str) -> tuple[Any, ...]:
    return (f"M{division}{n:02d}", division, f"调委会{n}", chair, 5 + n, 3 * n, 2020,
            100 + n, f"m{n}", dt.datetime(2021, 1, 1, tzinfo=dt.UTC), "b2")


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """District `p` and street `c` attached, the street synced from the district."""
    con = connect()
    for alias, code in (("p", DISTRICT), ("c", STREET)):
        attach(con, tmp_path / f"{code}.duckdb", alias)
        ensure_node(con, alias, code, HELD)
    con.executemany("INSERT INTO p.facilities VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [facility(1, C1), facility(2, C1), facility(3, ELSEWHERE)])
    con.executemany("INSERT INTO p.mediation_committees VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [committee(1, C1, "王芳"), committee(2, ELSEWHERE, "陈静")])
    set_high_water_marks(con, "p", {"facilities": 3, "mediation_committees": 102})
    sync_node(con, "c", "p", DISTRICT, STREET, HELD)
    yield con
    con.close()


def indexed_checksums(home: Path, con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The street's checksums as the network index stores them."""
    pipeline.write_network_index(home, [], node_stats(con, "c", STREET, HELD).__dict__)
    index = json.loads((home / "extracts" / "network.json").read_text("utf-8"))
    checksums: dict[str, str] = index["nodes"][0]["checksums"]
    return checksums


def test_a_value_changed_in_place_changes_the_indexed_checksum(con: duckdb.DuckDBPyConnection,
                                                               tmp_path: Path) -> None:
    before = indexed_checksums(tmp_path, con)
    # edited in the node file, `_row_hash` kept (it is copied by sync, so a tampered row keeps it)
    con.execute("UPDATE c.facilities SET name = '改过的名字' WHERE facility_id = ?", [f"F{C1}002"])
    after = indexed_checksums(tmp_path, con)

    assert after["facilities"] != before["facilities"]
    assert after["mediation_committees"] == before["mediation_committees"]


def test_a_node_checksum_is_the_sum_of_its_control_totals_hashes(con: duckdb.DuckDBPyConnection) -> None:
    stats = node_stats(con, "c", STREET, HELD)
    totals = node_totals(con, "c", HELD, "street")

    assert stats.checksums == {name: str(sum(t.hash for t in by_division.values()))
                               for name, by_division in totals.items()}
    assert (stats.rows["facilities"], stats.rows["mediation_committees"]) == (2, 1)


def test_a_synced_node_has_the_checksum_its_parent_expects(con: duckdb.DuckDBPyConnection) -> None:
    # the district's totals over the street's subtree and the street tier's fields (without chair_name)
    expected = node_totals(con, "p", HELD, "street", subtree_prefix(STREET))

    assert node_stats(con, "c", STREET, HELD).checksums == {
        name: str(sum(t.hash for t in by_division.values())) for name, by_division in expected.items()}
