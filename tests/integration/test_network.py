"""The four-tier network after the demo's two rounds: jurisdiction, tier sums, the batch ledger,
planted bad rows in quarantine, movers, idempotent re-ingest and extracts readable by DuckDB 1.4.

Reads the session-shared `demo_home` (never writes it); the re-ingest test builds its own home."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import AS_OF, FEEDS

from civicnet import context, pipeline
from civicnet.demo.changes import read_residents
from civicnet.demo.data import load_residents_feed
from civicnet.pipeline.status import collect
from schemas.contract import load_contracts
from schemas.divisions import load_registry, subtree_prefix
from warehouse.stats import node_stats
from warehouse.stores import node_path

pytestmark = pytest.mark.slow  # every test here opens hundreds of node files or runs subprocesses

CITY = "440300000000"
DATASETS = tuple(sorted(load_contracts()))  # every shipped dataset (the tiny home leaves some empty)
SUMMED = ("residents", "facilities")  # anchored at communities: every tier holds all of them
TIER_SIZES = {"city": 1, "district": 9, "street": 79, "community": 810}
REGISTRY = load_registry(2020)
CIVICNET = Path(sys.executable).with_name("civicnet")
# one query per file: rows outside the node's subtree, rows held, and the code the node records
SCAN_SQL = "SELECT " + ", ".join(
    [f"(SELECT count(*) FROM f.{t} WHERE NOT starts_with(division_code, $prefix))" for t in DATASETS]
    + [f"(SELECT count(*) FROM f.{t})" for t in DATASETS]
    + ["(SELECT string_agg(code, ',') FROM f._civicnet.node)"])


@dataclass(frozen=True)
class Scan:
    """What one extract holds, read with one query."""

    outside: dict[str, int]  # dataset → rows whose division_code lies outside the node's subtree
    rows: dict[str, int]  # dataset → rows held
    code: str  # the code the file records for itself


def run_cli(*args: str) -> str:
    done = subprocess.run([str(CIVICNET), *args], capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def query_file(con: duckdb.DuckDBPyConnection, path: Path, sql: str, params: object = None) -> list[Any]:
    """Run one query against a DuckDB file attached read-only as `f` (one connection for many
    files: attaching costs a millisecond, a new connection tens)."""
    con.execute(f"ATTACH '{path}' AS f (READ_ONLY)")
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.execute("DETACH f")


def scan(con: duckdb.DuckDBPyConnection, path: Path, code: str) -> Scan:
    (row,) = query_file(con, path, SCAN_SQL, {"prefix": subtree_prefix(code)})
    n = len(DATASETS)
    return Scan(dict(zip(DATASETS, row[:n], strict=True)), dict(zip(DATASETS, row[n:2 * n], strict=True)), row[-1])


def subtree_size(code: str) -> int:
    prefix = subtree_prefix(code)
    return sum(1 for c in REGISTRY.divisions if c.startswith(prefix))


@pytest.fixture(scope="module")
def status(demo_home: Path) -> dict[str, Any]:
    """`civicnet status --json` as the real CLI prints it."""
    return json.loads(run_cli("status", "--json", "--home", str(demo_home)))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def nodes(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The listed nodes by code."""
    return {n["code"]: n for n in status["nodes"]}


@pytest.fixture(scope="module")
def scans(nodes: dict[str, dict[str, Any]]) -> dict[str, Scan]:
    """Every listed extract, opened read-only once."""
    with duckdb.connect() as con:
        return {code: scan(con, Path(n["extract"]), code) for code, n in nodes.items()}


@pytest.fixture(scope="module")
def planted(demo_home: Path) -> dict[str, Any]:
    return json.loads((demo_home / "feeds" / "planted.json").read_text("utf-8"))  # type: ignore[no-any-return]


def test_the_cli_and_collect_report_the_same_network(demo_home: Path, status: dict[str, Any]) -> None:
    collected = json.loads(json.dumps(collect(demo_home).to_dict(), ensure_ascii=False))
    assert status["nodes"] == collected["nodes"]
    assert status["batches"] == collected["batches"]
    assert Path(status["home"]) == demo_home.resolve()


def test_nodes_of_all_four_tiers_are_listed(status: dict[str, Any]) -> None:
    assert Counter(n["tier"] for n in status["nodes"]) == TIER_SIZES
    assert sorted(n["code"] for n in status["nodes"]) == sorted(REGISTRY.divisions)


def test_every_listed_extract_is_where_the_tier_and_code_say(
        demo_home: Path, nodes: dict[str, dict[str, Any]], scans: dict[str, Scan]) -> None:
    for code, node in nodes.items():
        assert Path(node["extract"]) == demo_home / "extracts" / node["tier"] / f"{code}.duckdb"
        assert scans[code].code == code


def test_every_row_of_every_extract_lies_in_its_jurisdiction(scans: dict[str, Scan]) -> None:
    outside = {code: s.outside for code, s in scans.items() if any(s.outside.values())}
    assert outside == {}


def test_every_extract_holds_what_the_status_lists_and_every_division_of_its_subtree(
        nodes: dict[str, dict[str, Any]], scans: dict[str, Scan]) -> None:
    assert {c: s.rows for c, s in scans.items()} == {c: n["rows"] for c, n in nodes.items()}
    short = {c: s.rows["divisions"] for c, s in scans.items() if s.rows["divisions"] != subtree_size(c)}
    assert short == {}


def test_a_moved_home_still_reads_every_extract(demo_home: Path, tmp_path: Path,
                                                nodes: dict[str, dict[str, Any]]) -> None:
    """Copy the home (hard links: the shared home is never written), move the copy, ask its status."""
    shutil.copytree(demo_home, tmp_path / "copied", copy_function=os.link)
    moved = (tmp_path / "copied").rename(tmp_path / "moved")

    status = json.loads(run_cli("status", "--json", "--home", str(moved)))

    listed = {n["code"]: Path(n["extract"]) for n in status["nodes"]}
    assert sorted(listed) == sorted(nodes)
    assert [c for c, p in listed.items() if not (p.is_relative_to(moved) and p.is_file())] == []
    with duckdb.connect() as con:
        assert {c: scan(con, p, c).rows for c, p in listed.items()} == {c: n["rows"] for c, n in nodes.items()}


@pytest.mark.parametrize("dataset", SUMMED)
def test_each_tier_adds_up_to_the_tier_above(nodes: dict[str, dict[str, Any]], dataset: str) -> None:
    assert nodes[CITY]["rows"][dataset] > 0
    mismatched = {}
    for code, node in nodes.items():
        children = REGISTRY.children(code)
        if children:
            total = sum(nodes[c.code]["rows"][dataset] for c in children)
            if total != node["rows"][dataset]:
                mismatched[code] = (node["rows"][dataset], total)
    assert mismatched == {}


def test_every_batch_balances(status: dict[str, Any]) -> None:
    batches = status["batches"]
    assert {b["feed"] for b in batches} == set(FEEDS)
    assert len(batches) == len(FEEDS) + 1  # plus the change drop
    for b in batches:
        assert b["received"] == b["applied"] + b["quarantined"] + b["duplicates"], b
        assert b["balanced"] is True
    assert sum(b["quarantined"] for b in batches) > 0


def _quarantine(demo_home: Path, dataset: str, key_sql: str) -> dict[Any, set[str]]:
    """key → reason codes of a dataset's quarantined rows in the city node."""
    con = duckdb.connect(str(node_path(demo_home, CITY)), read_only=True)
    try:
        rows = con.execute(f"""SELECT {key_sql}, [r.code FOR r IN reasons]
                               FROM _civicnet.quarantine WHERE dataset = ?""", [dataset]).fetchall()
    finally:
        con.close()
    out: dict[Any, set[str]] = {}
    for key, codes in rows:
        out.setdefault(key, set()).update(codes)
    return out


def test_every_planted_resident_is_quarantined_on_its_line_with_its_reason(
        demo_home: Path, planted: dict[str, Any]) -> None:
    rows = planted["residents"]["planted_rows"]
    held = _quarantine(demo_home, "residents", "line")
    assert rows
    missing = [r for r in rows if r["reason"] not in held.get(r["line"], set())]
    assert missing == []
    assert set(held) == {r["line"] for r in rows}  # and nothing else was quarantined


def test_every_planted_facility_is_quarantined_with_its_reason(demo_home: Path, planted: dict[str, Any]) -> None:
    rows = planted["facilities"]["planted_rows"]
    held = _quarantine(demo_home, "facilities", "raw->>'fac_no'")
    assert rows
    missing = [r for r in rows if r["reason"] not in held.get(r["fac_no"], set())]
    assert missing == []
    assert set(held) == {r["fac_no"] for r in rows}


def _new_homes(demo_home: Path, planted: dict[str, Any]) -> dict[str, str]:
    """citizen_id → community of every mover, read from the change drop itself."""
    feed = load_residents_feed()
    source = {field: col for col, field in feed.columns.items()}
    drop = read_residents(demo_home / "feeds" / planted["residents_changes"]["file"], list(feed.columns))
    ids, codes = drop.column(source["citizen_id"]).to_pylist(), drop.column(source["division_code"]).to_pylist()
    homes = dict(zip(ids, codes, strict=True))
    return {cid: homes[cid] for cid in planted["residents_changes"]["moved"]}


@pytest.mark.parametrize("tier", ["community", "street", "district"])
def test_every_mover_sits_in_its_new_node_and_no_other_of_the_tier(
        demo_home: Path, planted: dict[str, Any], tier: str) -> None:
    new_homes = _new_homes(demo_home, planted)
    assert len(new_homes) > 10
    held: dict[str, list[tuple[str, str]]] = {}
    with duckdb.connect() as con:
        for division in REGISTRY.by_tier(tier):  # type: ignore[arg-type]
            for cid, code in query_file(con, node_path(demo_home, division.code),
                                        "SELECT citizen_id, division_code FROM f.residents "
                                        "WHERE list_contains(?, citizen_id)", [list(new_homes)]):
                held.setdefault(cid, []).append((division.code, code))
    expected = {cid: [(_ancestor(home, tier), home)] for cid, home in new_homes.items()}
    assert held == expected


def _ancestor(code: str, tier: str) -> str:
    """The division of `tier` whose subtree holds `code` (the code itself at its own tier)."""
    while REGISTRY.get(code).tier != tier:
        code = REGISTRY.get(code).parent_code
    return code


def _extract_rows_with(python: str, path: Path) -> dict[str, Any]:
    script = ("import duckdb, json, sys\n"
              "con = duckdb.connect(sys.argv[1], read_only=True)\n"
              "rows = {t: con.execute(f'SELECT count(*) FROM \"{t}\"').fetchone()[0] for t in sys.argv[2:]}\n"
              "print(json.dumps({'version': duckdb.__version__, 'rows': rows}))\n")
    done = subprocess.run([python, "-c", script, str(path), *DATASETS], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def duckdb14() -> str:
    """The Python with DuckDB 1.4 (asked for first, so a skip does not build the demo home)."""
    python = os.environ.get("CIVICNET_DUCKDB14_PYTHON")
    if not python:
        pytest.skip("CIVICNET_DUCKDB14_PYTHON is unset: run through `make test`, which creates "
                    ".venv-duckdb14 with DuckDB 1.4 and exports it")
    return python


@pytest.mark.parametrize("tier", ["community", "street", "city"])
def test_an_extract_opens_in_duckdb_1_4(duckdb14: str, nodes: dict[str, dict[str, Any]], tier: str) -> None:
    node = max((n for n in nodes.values() if n["tier"] == tier), key=lambda n: n["rows"]["residents"])
    assert node["rows"]["residents"] > 0

    opened = _extract_rows_with(duckdb14, Path(node["extract"]))

    assert opened["version"].startswith("1.4.")
    assert opened["rows"] == node["rows"]


@pytest.fixture(scope="module")
def own_home(tmp_path_factory: pytest.TempPathFactory, home_copy: Callable[[Path], Path]) -> Path:
    """A home after round one that the re-ingest tests may write (a copy of the session's)."""
    return home_copy(tmp_path_factory.mktemp("reingest"))


def _city_state(home: Path) -> dict[str, Any]:
    """The city node's ledger, history, quarantine, marks and stats, plus what landing holds."""
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{node_path(home, CITY)}' AS city (READ_ONLY)")
        state: dict[str, Any] = {
            "stats": node_stats(con, "city", CITY, context.contracts()),
            "ledger": con.execute("SELECT * EXCLUDE (decided_at) FROM city._civicnet.batches ORDER BY ALL").fetchall(),
            "hwm": con.execute("SELECT * FROM city._civicnet.hwm ORDER BY ALL").fetchall(),
            "quarantine": con.execute("SELECT count(*) FROM city._civicnet.quarantine").fetchall(),
            "tombstones": con.execute("SELECT count(*) FROM city._civicnet.tombstones").fetchall(),
        }
        for dataset in DATASETS:
            state[f"{dataset}_history"] = con.execute(
                f"SELECT count(*), count(_valid_to) FROM city.{dataset}_history").fetchall()
    finally:
        con.close()
    state["landing"] = sorted(p.relative_to(home).as_posix() for p in (home / "landing").glob("*/*"))
    return state


@pytest.mark.parametrize("slug", FEEDS)
def test_ingesting_the_same_files_again_is_a_no_op(own_home: Path, slug: str) -> None:
    before = _city_state(own_home)
    assert before["ledger"]

    assert pipeline.ingest_feed(own_home, slug, AS_OF) == []

    assert _city_state(own_home) == before


def test_the_same_content_under_a_new_name_is_a_no_op(own_home: Path) -> None:
    folder = own_home / "feeds" / "public_security" / "residents"
    shutil.copyfile(folder / "residents_0001_initial.csv", folder / "residents_0009_resent.csv")
    before = _city_state(own_home)

    assert pipeline.ingest_feed(own_home, "public_security_residents", AS_OF) == []

    assert _city_state(own_home) == before
