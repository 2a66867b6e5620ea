"""`civicnet verify [--repair]` on a tiny Shenzhen built for this module: a clean network agrees;
a tampered community (a row deleted, a value changed in another dataset) is named alone and
repaired without touching any other node file; a tampered street is named as the street, not
its communities; the sync's walk checks every node too, scanning only the nodes written since its
last walk. The tests run in order on one home (each leaves the network clean again)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from civicnet import cli, context, pipeline
from civicnet.pipeline.verify import ReconciliationError, record_walks, render, verify_network
from schemas.contract import Contract
from schemas.divisions import parent_of, subtree_prefix, tier_of
from schemas.layout import walk_file
from warehouse.extract import extract_path
from warehouse.node import attach, connect, detach
from warehouse.stores import node_path
from warehouse.walkstore import read_walk_report

pytestmark = pytest.mark.slow  # builds its own home and opens every node file several times

CONTRACTS: dict[str, Contract] = {c.name: c for c in context.contracts()}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, home_copy: Callable[[Path], Path]) -> Path:
    """A home of its own (the tests tamper with it): a copy of the session's round-one home, synced once."""
    return home_copy(tmp_path_factory.mktemp("verify"))


def digests(home: Path) -> dict[str, str]:
    """sha256 of every node file, by path."""
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((home / "nodes").glob("*/*.duckdb"))}


def run(home: Path, *args: str) -> int:
    return cli.main(["verify", "--home", str(home), *args])


def tamper(home: Path, code: str, *statements: tuple[str, list[object]]) -> None:
    """Edit a node file by hand, as someone with write access to the disk could."""
    con = connect()
    try:
        attach(con, node_path(home, code), "n")
        for sql, params in statements:
            con.execute(sql, params)
        detach(con, "n")
    finally:
        con.close()


def a_community_with_residents_and_facilities(home: Path) -> str:
    con = context.open_city(home, read_only=True)
    try:
        rows = con.execute("""SELECT division_code FROM city.residents INTERSECT
                              SELECT division_code FROM city.facilities ORDER BY 1 LIMIT 1""").fetchall()
    finally:
        con.close()
    return str(rows[0][0])


def slice_differences(home: Path, code: str) -> dict[str, int]:
    """Per dataset: rows in the node but not in its parent's slice, plus the other way round."""
    con = connect()
    out = {}
    try:
        attach(con, node_path(home, code), "c", read_only=True)
        attach(con, node_path(home, parent_of(code)), "p", read_only=True)
        for name, contract in CONTRACTS.items():
            cols = ", ".join(f'"{f.name}"' for f in contract.fields_for_tier(tier_of(code))) + ", _seq, _row_hash"
            mine = f'SELECT {cols} FROM c."{name}"'
            theirs = f'SELECT {cols} FROM p."{name}" WHERE starts_with(division_code, ?)'
            rows = con.execute(f"SELECT count(*) FROM (({mine} EXCEPT ALL {theirs}) UNION ALL "
                               f"({theirs} EXCEPT ALL {mine}))", [subtree_prefix(code)] * 2).fetchall()
            out[name] = int(rows[0][0])
    finally:
        con.close()
    return out


def test_a_synced_network_agrees_and_the_sync_recorded_it(home: Path) -> None:
    recorded = json.loads((home / "quality" / "reconciliation.json").read_text("utf-8"))
    assert (recorded["agrees"], recorded["mismatches"], recorded["nodes_checked"]) == (True, [], 898)
    report = verify_network(home)
    assert report.agrees and report.mismatches == [] and report.nodes_checked == 898  # every node but the city


def test_a_tampered_community_is_named_alone(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    community = a_community_with_residents_and_facilities(home)
    tamper(home, community,
           ("DELETE FROM n.residents WHERE citizen_id = (SELECT min(citizen_id) FROM n.residents)", []),
           ("UPDATE n.facilities SET name = name || '（改）' WHERE facility_id = "
            "(SELECT min(facility_id) FROM n.facilities)", []))
    before = digests(home)
    capsys.readouterr()
    assert run(home) == 1
    out = capsys.readouterr().out
    assert community in out and "mismatches in 1 nodes" in out
    assert digests(home) == before  # checking opens nothing for writing
    recorded = json.loads((home / "quality" / "reconciliation.json").read_text("utf-8"))
    assert recorded["agrees"] is False
    assert {(m["node"], m["tier"], m["parent"]) for m in recorded["mismatches"]} == {
        (community, "community", parent_of(community))}
    assert {(m["dataset"], m["what"]) for m in recorded["mismatches"]} == {
        ("residents", "rows"), ("residents", "hash"), ("facilities", "hash")}


def test_repair_restores_the_community_and_touches_no_other_node(home: Path) -> None:
    community = a_community_with_residents_and_facilities(home)
    before = digests(home)
    assert run(home, "--repair") == 0
    after = digests(home)
    changed = {path for path in before if before[path] != after[path]}
    assert changed == {str(node_path(home, community).relative_to(home))}
    assert slice_differences(home, community) == dict.fromkeys(CONTRACTS, 0)
    extract = extract_path(home, community)
    assert hashlib.sha256(extract.read_bytes()).hexdigest() == after[str(node_path(home, community).relative_to(home))]
    recorded = json.loads((home / "quality" / "reconciliation.json").read_text("utf-8"))
    assert recorded["agrees"] is True and recorded["remaining"] == []
    assert sorted((r["node"], r["dataset"], r["divisions"]) for r in recorded["repaired"]) == [
        (community, "facilities", [community]), (community, "residents", [community])]
    assert verify_network(home).agrees


def test_a_tampered_street_is_named_as_the_street_not_its_communities(home: Path) -> None:
    community = a_community_with_residents_and_facilities(home)
    street = parent_of(community)
    tamper(home, street, ("UPDATE n.residents SET status = 'tampered' WHERE division_code = ?", [community]))
    report = verify_network(home)
    assert {m.node for m in report.mismatches} == {street}
    assert {(m.dataset, m.division_code, m.what) for m in report.mismatches} == {("residents", community, "hash")}
    assert f"street {street}" in render(report)
    before = digests(home)
    repaired = verify_network(home, repair=True)
    assert repaired.agrees and [(r.node, r.dataset) for r in repaired.repaired] == [(street, "residents")]
    after = digests(home)
    changed = {p for p in before if before[p] != after[p]}
    assert changed == {str(node_path(home, street).relative_to(home))}
    assert slice_differences(home, street)["residents"] == 0


def test_verify_json_is_what_the_file_holds(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert run(home, "--json") == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((home / "quality" / "reconciliation.json").read_text("utf-8"))
    assert printed["agrees"] is True and printed["nodes_checked"] == 898


def walk_record(home: Path) -> dict[str, Any]:
    return dict(json.loads((home / "quality" / "reconciliation.json").read_text("utf-8")))


def test_the_sync_checks_every_node_on_its_walk_and_scans_only_the_nodes_written_since(home: Path) -> None:
    pipeline.sync_network(home)  # the tests above repaired a community and a street by hand
    recorded = walk_record(home)
    assert (recorded["agrees"], recorded["nodes_checked"], recorded["nodes_scanned"]) == (True, 898, 2)
    pipeline.sync_network(home)
    recorded = walk_record(home)
    assert (recorded["agrees"], recorded["nodes_checked"], recorded["nodes_scanned"]) == (True, 898, 0)
    assert sorted(p.stem for p in (home / "quality" / "walks").glob("*.json")) == sorted(context.districts())


def test_a_community_tampered_after_a_sync_is_named_alone_by_the_next(home: Path) -> None:
    community = a_community_with_residents_and_facilities(home)
    tamper(home, community,
           ("DELETE FROM n.residents WHERE citizen_id = (SELECT min(citizen_id) FROM n.residents)", []))
    pipeline.sync_network(home)  # nothing to apply: the node is only read, and checked anew
    recorded = walk_record(home)
    assert {(m["node"], m["dataset"], m["what"]) for m in recorded["remaining"]} == {
        (community, "residents", "rows"), (community, "residents", "hash")}
    assert recorded["nodes_scanned"] == 1
    with pytest.raises(ReconciliationError, match=community):
        pipeline.reconcile(home)
    assert run(home, "--repair") == 0
    pipeline.sync_network(home)
    assert walk_record(home)["agrees"] is True


def test_a_district_without_a_walk_record_is_verified_anew(home: Path) -> None:
    district = context.districts()[0]
    walk_file(home, district).unlink()
    report = record_walks(home)
    assert report.agrees and report.nodes_checked == 898
    parts = [read_walk_report(walk_file(home, code)) for code in context.districts()]
    assert [code for code, part in zip(context.districts(), parts, strict=True) if part is None] == [district]
