"""A home whose path holds a single and a double quote (`o'neil "home"`): nodes are attached, merged
into, synced, verified, published and rebuilt there as anywhere else.

Every path reaches DuckDB through `schemas.sql.quote_literal` and every alias through `quote_ident`;
before that, the quote in the path ended the ATTACH statement's string. A registry of one branch
(city → 福田 → 南园 → two communities) keeps the walk to four nodes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from quality.conform import QUARANTINE_SCHEMA
from schemas.citizen_id import check_char
from schemas.contract import Contract, load_contracts
from schemas.derive import arrow_schema
from schemas.divisions import Registry, load_registry, subtree_prefix, tier_of
from warehouse.extract import extract_path
from warehouse.merge import BatchInput, apply_batch
from warehouse.network import rebuild_node, sync_subtree
from warehouse.node import attach, connect, ensure_node, high_water_marks
from warehouse.reconcile import compare_node, node_totals
from warehouse.stores import node_path

CITY, FUTIAN, NANYUAN = "440300000000", "440304000000", "440304001000"
BINJIANG, SHAPUTOU = "440304001018", "440304001019"  # communities of 南园
BRANCH = (CITY, FUTIAN, NANYUAN, BINJIANG, SHAPUTOU)
REGISTRY = Registry(2020, {c: load_registry().get(c) for c in BRANCH})
CONTRACTS: list[Contract] = list(load_contracts().values())
RESIDENTS = load_contracts()["residents"]
HOMES = {1: BINJIANG, 2: BINJIANG, 3: SHAPUTOU}


def resident(n: int) -> dict[str, Any]:
    first17 = f"440304198001{n:02d}011"
    return {"citizen_id": first17 + check_char(first17), "name": f"李{n}", "sex": "1",
            "birth_date": dt.date(1980, 1, n), "residence_type": "registered", "household_id": f"H{n:06d}",
            "address": f"深圳市第{n}号", "phone": f"137{n:08d}", "division_code": HOMES[n],
            "moved_in_date": dt.date(2015, 1, 1), "status": "active", "vintage": 2020}


def merge_into_city(home: Path) -> None:
    """Apply one batch of residents to the city node of `home` with the real merge."""
    batch = BatchInput("batch-0001", "public_security_residents", "public_security", "residents.csv",
                       "2021-06-01T02:00:00+00:00", len(HOMES), 0, {"verdict": "pass"})
    accepted = pa.Table.from_pylist([resident(n) for n in HOMES], arrow_schema(RESIDENTS))
    con = connect()
    try:
        attach(con, node_path(home, CITY), "city")
        ensure_node(con, "city", CITY, CONTRACTS)
        apply_batch(con, "city", RESIDENTS, accepted, QUARANTINE_SCHEMA.empty_table(), batch)
    finally:
        con.close()


def mismatches(home: Path, parent: str, child: str) -> list[Any]:
    """compare_node of a child with its parent, both attached read-only from `home`."""
    con = connect()
    try:
        attach(con, node_path(home, parent), "parent", read_only=True)
        attach(con, node_path(home, child), "child", read_only=True)
        tier = tier_of(child)
        held = [c for c in CONTRACTS if tier in c.reaches]
        expected = node_totals(con, "parent", held, tier, subtree_prefix(child))
        return compare_node(child, held, high_water_marks(con, "parent"), high_water_marks(con, "child"),
                            expected, node_totals(con, "child", held, tier))
    finally:
        con.close()


def residents_in(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        (n,), = con.execute("SELECT count(*) FROM residents").fetchall()
    return int(n)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home under a folder named o'neil "home", its city merged and its branch synced."""
    home = tmp_path_factory.mktemp("quoted") / "o'neil \"home\""
    merge_into_city(home)
    report = sync_subtree(home, REGISTRY, FUTIAN, CONTRACTS)
    assert report.skipped == []
    return home


def test_the_branch_syncs_into_the_quoted_home(home: Path) -> None:
    assert "'" in str(home) and '"' in str(home)
    counts = {code: residents_in(node_path(home, code)) for code in BRANCH}
    assert counts == {CITY: 3, FUTIAN: 3, NANYUAN: 3, BINJIANG: 2, SHAPUTOU: 1}


@pytest.mark.parametrize(("parent", "child"), [(CITY, FUTIAN), (FUTIAN, NANYUAN), (NANYUAN, BINJIANG),
                                                (NANYUAN, SHAPUTOU)], ids=["district", "street", "c1", "c2"])
def test_every_node_verifies_against_its_parent(home: Path, parent: str, child: str) -> None:
    assert mismatches(home, parent, child) == []


def test_extracts_are_published_in_the_quoted_home(home: Path) -> None:
    assert residents_in(extract_path(home, BINJIANG)) == 2


def test_a_node_rebuilds_in_the_quoted_home(home: Path) -> None:
    rebuilt = rebuild_node(home, SHAPUTOU, CONTRACTS, dt.datetime(2021, 7, 1, tzinfo=dt.UTC))
    assert (rebuilt.source, rebuilt.stats.rows["residents"]) == (NANYUAN, 1)
    assert mismatches(home, NANYUAN, SHAPUTOU) == []
