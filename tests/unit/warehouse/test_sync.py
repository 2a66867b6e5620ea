"""Syncing a district's subtree from the city: jurisdiction, moves in one round, convergence, extracts.

A small city node (a handful of residents in Futian and one in Luohu) is merged with the real
merge, then `sync_subtree` walks Futian's 128 DuckDB node files. A walk takes seconds, so one
module-scoped scenario runs three rounds (initial load, a batch of moves, a sync with no new
input) and the tests read what each round left behind."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from quality.conform import QUARANTINE_SCHEMA
from schemas.citizen_id import check_char
from schemas.contract import Contract, load_contracts
from schemas.derive import arrow_schema
from schemas.divisions import Registry, in_subtree, load_registry, tier_of
from warehouse.extract import extract_path
from warehouse.merge import BatchInput, apply_batch
from warehouse.network import SubtreeReport, sync_subtree
from warehouse.node import attach, ensure_node
from warehouse.stats import NodeStats, node_stats
from warehouse.stores import node_path

CITY = "440300000000"
FUTIAN = "440304000000"
NANYUAN = "440304001000"  # 南园街道
BINJIANG = "440304001018"  # 滨江社区, in 南园
SHAPUTOU = "440304001019"  # 沙埔头社区, in 南园
NANYUAN_EMPTY = "440304001020"  # 南园社区: nobody lives there in these tests
YUANLING = "440304002000"  # 园岭街道
HONGLI = "440304002016"  # 红荔社区, in 园岭
LUOHU_COMMUNITY = "440303001001"  # 罗湖 桂园街道 大塘龙社区
REGISTRY: Registry = load_registry()
CONTRACTS: list[Contract] = list(load_contracts().values())
RESIDENTS: Contract = load_contracts()["residents"]
# resident number → community in the first batch
FIRST_HOMES = {1: BINJIANG, 2: BINJIANG, 3: SHAPUTOU, 4: HONGLI, 5: LUOHU_COMMUNITY, 6: BINJIANG, 7: BINJIANG}
# the second batch: who moves where (3 only changes phone)
MOVES = {1: HONGLI, 2: SHAPUTOU, 6: LUOHU_COMMUNITY, 5: BINJIANG}
SECOND_HOMES = FIRST_HOMES | MOVES
FUTIAN_NODES = [d.code for d in REGISTRY.walk() if in_subtree(d.code, FUTIAN)]

pytestmark = pytest.mark.slow  # each round walks 128 node files (seconds, not milliseconds)


def citizen_id(n: int) -> str:
    first17 = f"440304198001{n:02d}011"
    return first17 + check_char(first17)


def make_resident(n: int, **overrides: Any) -> dict[str, Any]:
    """One accepted residents row living in FIRST_HOMES[n] unless overridden."""
    row: dict[str, Any] = {
        "citizen_id": citizen_id(n), "name": f"李{n}", "sex": "1", "birth_date": dt.date(1980, 1, n),
        "residence_type": "registered", "household_id": f"H{FIRST_HOMES[n]}{n:06d}",
        "address": f"深圳市第{n}号", "phone": f"137{n:08d}", "division_code": FIRST_HOMES[n],
        "moved_in_date": dt.date(2015, 1, 1), "status": "active", "vintage": 2020,
    }
    return row | overrides


def make_batch(rows: list[dict[str, Any]], **overrides: Any) -> tuple[pa.Table, pa.Table, BatchInput]:
    """(accepted, quarantined, BatchInput) of residents rows, nothing quarantined."""
    accepted = pa.Table.from_pylist(rows, arrow_schema(RESIDENTS))
    quarantined = QUARANTINE_SCHEMA.empty_table()
    fields: dict[str, Any] = {
        "batch_id": "batch-0001", "feed": "public_security_residents", "department": "public_security",
        "source_name": "residents.csv", "received_at": "2021-06-01T02:00:00+00:00",
        "received": len(rows), "duplicates": 0, "gate": {"verdict": "pass"},
    } | overrides
    return accepted, quarantined, BatchInput(**fields)


def merge_into_city(home: Path, rows: list[dict[str, Any]], **overrides: Any) -> None:
    """Apply one batch to the city node file and close it (sync attaches it read-only)."""
    con = duckdb.connect()
    try:
        attach(con, node_path(home, CITY), "city")
        ensure_node(con, "city", CITY, CONTRACTS)
        accepted, quarantined, batch = make_batch(rows, **overrides)
        apply_batch(con, "city", RESIDENTS, accepted, quarantined, batch)
    finally:
        con.close()


def sync_futian(home: Path) -> SubtreeReport:
    return sync_subtree(home, REGISTRY, FUTIAN, CONTRACTS)


def read_node(path: Path, code: str) -> tuple[dict[str, str], NodeStats]:
    """(citizen_id → division_code, stats) of a DuckDB file (node or extract), opened read-only."""
    con = duckdb.connect()
    try:
        attach(con, path, "n", read_only=True)
        residents = dict(con.execute("SELECT citizen_id, division_code FROM n.residents").fetchall())
        return residents, node_stats(con, "n", code, CONTRACTS)
    finally:
        con.close()


def expected_residents(code: str, homes: dict[int, str]) -> dict[str, str]:
    return {citizen_id(n): c for n, c in homes.items() if in_subtree(c, code)}


@dataclass(frozen=True)
class Round:
    """What one sync round returned and left in every Futian node file."""

    report: SubtreeReport
    residents: dict[str, dict[str, str]]  # node code → citizen_id → division_code
    stats: dict[str, NodeStats]  # node code → stats read back from the file
    files: dict[str, tuple[int, int, str]]  # node and extract file → (size, mtime_ns, sha256) after the round


def file_states(home: Path) -> dict[str, tuple[int, int, str]]:
    """Every node and extract file of the home: size, mtime and content digest."""
    out = {}
    for path in sorted([*(home / "nodes").rglob("*.duckdb*"), *(home / "extracts").rglob("*.duckdb*")]):
        st = path.stat()
        out[str(path.relative_to(home))] = (st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def run_round(home: Path) -> Round:
    report = sync_futian(home)
    files = file_states(home)  # before read_node opens anything
    read = {c: read_node(node_path(home, c), c) for c in FUTIAN_NODES}
    return Round(report, {c: r for c, (r, _) in read.items()}, {c: st for c, (_, st) in read.items()}, files)


@pytest.fixture(scope="module")
def rounds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Round, Round, Round]:
    """Round 1: initial load; round 2: moves and an update; round 3: no new input."""
    home = tmp_path_factory.mktemp("sync")
    merge_into_city(home, [make_resident(n) for n in FIRST_HOMES])
    first = run_round(home)
    second_rows = [make_resident(n, division_code=to, household_id=f"H{to}90000{n}") for n, to in MOVES.items()]
    merge_into_city(home, [*second_rows, make_resident(3, phone="13900000003")],
                    batch_id="batch-0002", received_at="2021-06-02T02:00:00+00:00")
    second = run_round(home)
    third = run_round(home)
    return home, first, second, third


@pytest.mark.parametrize(
    ("code", "numbers"),
    [(FUTIAN, {1, 2, 3, 4, 6, 7}), (NANYUAN, {1, 2, 3, 6, 7}), (BINJIANG, {1, 2, 6, 7}), (SHAPUTOU, {3}),
     (YUANLING, {4}), (HONGLI, {4}), (NANYUAN_EMPTY, set())],
    ids=["district", "street", "community", "other_community_same_street", "other_street",
         "community_of_other_street", "untouched_community"],
)
def test_a_node_holds_exactly_the_residents_of_its_subtree(
        rounds: tuple[Path, Round, Round, Round], code: str, numbers: set[int]) -> None:
    _, first, _, _ = rounds
    assert first.residents[code] == {citizen_id(n): FIRST_HOMES[n] for n in numbers}


@pytest.mark.parametrize("round_no", [0, 1, 2], ids=["initial", "after_moves", "no_new_input"])
def test_every_node_of_the_subtree_holds_exactly_its_jurisdiction(
        rounds: tuple[Path, Round, Round, Round], round_no: int) -> None:
    _, *results = rounds
    result: Round = results[round_no]
    homes = FIRST_HOMES if round_no == 0 else SECOND_HOMES
    assert sorted(n.code for n in result.report.nodes) == sorted(FUTIAN_NODES)
    for code in FUTIAN_NODES:
        assert result.residents[code] == expected_residents(code, homes), code


def test_other_districts_are_not_written_and_the_city_is_untouched(
        rounds: tuple[Path, Round, Round, Round]) -> None:
    home, *_ = rounds
    assert not node_path(home, "440303000000").exists()
    assert not node_path(home, LUOHU_COMMUNITY).exists()
    assert read_node(node_path(home, CITY), CITY)[0] == expected_residents(CITY, SECOND_HOMES)


@pytest.mark.parametrize(
    ("n", "gains", "loses"),
    [
        (1, [FUTIAN, YUANLING, HONGLI], [NANYUAN, BINJIANG]),
        (2, [FUTIAN, NANYUAN, SHAPUTOU], [BINJIANG]),
        (6, [], [FUTIAN, NANYUAN, BINJIANG]),
        (5, [FUTIAN, NANYUAN, BINJIANG], []),
    ],
    ids=["to_other_street", "within_street", "out_of_district", "into_district"],
)
def test_a_move_leaves_the_old_nodes_and_reaches_the_new_ones_in_one_round(
        rounds: tuple[Path, Round, Round, Round], n: int, gains: list[str], loses: list[str]) -> None:
    _, first, second, _ = rounds
    mover = citizen_id(n)
    for code in loses:
        assert first.residents[code].get(mover) == FIRST_HOMES[n], code
        assert mover not in second.residents[code], code
    for code in gains:
        assert second.residents[code].get(mover) == MOVES[n], code
    held_by = [c for c in FUTIAN_NODES if mover in second.residents[c]]
    assert sorted(held_by) == sorted(gains)


def test_the_old_community_counts_the_deletes_of_the_round(rounds: tuple[Path, Round, Round, Round]) -> None:
    _, _, second, _ = rounds
    (binjiang,) = second.report.changes[BINJIANG]
    assert (binjiang.dataset, binjiang.removed, binjiang.from_seq, binjiang.to_seq) == ("residents", 3, 1, 2)
    assert binjiang.upserts == 1  # resident 5 moved in


def test_a_sync_with_no_new_input_changes_nothing(rounds: tuple[Path, Round, Round, Round]) -> None:
    _, first, second, third = rounds
    assert second.stats != first.stats  # the moves did change checksums
    assert all(results == [] for results in third.report.changes.values())
    assert {n.code: n for n in third.report.nodes} == {n.code: n for n in second.report.nodes}
    assert third.stats == second.stats == {n.code: n for n in second.report.nodes}


def test_every_extract_is_published_and_equals_its_node(rounds: tuple[Path, Round, Round, Round]) -> None:
    home, _, _, third = rounds
    for code in FUTIAN_NODES:
        extract = extract_path(home, code)
        assert extract == home / "extracts" / third.stats[code].tier / f"{code}.duckdb"
        assert extract.exists(), code
        assert read_node(extract, code) == (third.residents[code], third.stats[code]), code


def test_a_sync_with_no_new_input_writes_no_node_and_no_extract(rounds: tuple[Path, Round, Round, Round]) -> None:
    _, _, second, third = rounds
    assert len(second.files) >= 2 * len(FUTIAN_NODES)
    assert third.files == second.files  # byte for byte, and not even touched (same mtime)


Files = dict[str, tuple[int, int, str]]
LUOHU = "440303000000"
GUIYUAN = "440303001000"  # 桂园街道, the street of LUOHU_COMMUNITY


@pytest.fixture(scope="module")
def one_move(tmp_path_factory: pytest.TempPathFactory) -> tuple[Files, Files, Path]:
    """Futian and Luohu synced, then resident 1 moves from 滨江 (Futian) to 大塘龙 (Luohu) and
    both districts sync again: the node and extract files before and after that second sync."""
    home = tmp_path_factory.mktemp("move")
    merge_into_city(home, [make_resident(n) for n in FIRST_HOMES])
    for district in (FUTIAN, LUOHU):
        sync_subtree(home, REGISTRY, district, CONTRACTS)
    merge_into_city(home, [make_resident(1, division_code=LUOHU_COMMUNITY, household_id="H440303001001900001")],
                    batch_id="batch-0002", received_at="2021-06-02T02:00:00+00:00")
    before = file_states(home)
    for district in (FUTIAN, LUOHU):
        sync_subtree(home, REGISTRY, district, CONTRACTS)
    return before, file_states(home), home


def test_a_single_move_writes_only_the_nodes_on_its_two_paths(one_move: tuple[Files, Files, Path]) -> None:
    before, after, home = one_move
    changed = sorted(p for p in after if before.get(p) != after[p])
    paths = [FUTIAN, NANYUAN, BINJIANG, LUOHU, GUIYUAN, LUOHU_COMMUNITY]
    tiers = {c: tier_of(c) for c in paths}
    assert changed == sorted([f"nodes/{tiers[c]}/{c}.duckdb" for c in paths]
                             + [f"extracts/{tiers[c]}/{c}.duckdb" for c in paths])
    assert read_node(node_path(home, LUOHU_COMMUNITY), LUOHU_COMMUNITY)[0][citizen_id(1)] == LUOHU_COMMUNITY
    assert citizen_id(1) not in read_node(extract_path(home, BINJIANG), BINJIANG)[0]
