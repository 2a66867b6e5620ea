"""Exactly once in effect, with a real kill: a network sync SIGKILLed part-way and run again ends
exactly where one clean run ends, node file by node file.

Two identical homes get the same change drop into their city nodes; home A syncs cleanly, home
B's `civicnet sync` is killed after a few hundred nodes and then run again to completion. Home A is
the session's `demo_home` (round one, then that change drop ingested and synced in one clean run,
by the same `sync_network` that `civicnet sync` runs); B is a copy of the session's round-one home."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from conftest import AS_OF

from civicnet import context, pipeline
from civicnet.demo.data import generate_changes
from schemas.derive import key_sql
from schemas.divisions import load_registry
from warehouse.extract import extract_path
from warehouse.node import high_water_mark
from warehouse.stats import NodeStats, node_stats
from warehouse.stores import node_path

pytestmark = pytest.mark.slow

CITY = "440300000000"
CIVICNET = Path(sys.executable).with_name("civicnet")
REGISTRY = load_registry(2020)
SYNCED = [d.code for d in REGISTRY.walk() if d.tier != "city"]  # the 898 nodes `sync` prints
KILL_AFTER = 300  # lines: two districts' subtrees and part of a third
CONTRACTS = context.contracts()


@dataclass(frozen=True)
class NodeState:
    """What must match between a clean and a killed-then-resumed run."""

    stats: NodeStats
    duplicate_keys: dict[str, int]  # dataset → rows sharing a key with another row
    marks: dict[str, int]  # dataset → high-water mark
    tombstones: int


def read_state(con: duckdb.DuckDBPyConnection, path: Path, code: str) -> NodeState:
    con.execute(f"ATTACH '{path}' AS n (READ_ONLY)")
    try:
        stats = node_stats(con, "n", code, CONTRACTS)
        duplicates, marks = {}, {}
        for contract in CONTRACTS:
            if contract.name in stats.rows:
                row = con.execute(f"""SELECT count(*) - count(DISTINCT {key_sql(contract, 'c')})
                                      FROM n."{contract.name}" c""").fetchone()
                duplicates[contract.name] = int(row[0]) if row else -1
                marks[contract.name] = high_water_mark(con, "n", contract.name)
        tombstones = con.execute("SELECT count(*) FROM n._civicnet.tombstones").fetchone()
        return NodeState(stats, duplicates, marks, int(tombstones[0]) if tombstones else -1)
    finally:
        con.execute("DETACH n")


def read_network(home: Path, where: str = "nodes") -> dict[str, NodeState]:
    """Every node file (or every extract) of a home."""
    locate = node_path if where == "nodes" else extract_path
    with duckdb.connect() as con:
        return {d.code: read_state(con, locate(home, d.code), d.code) for d in REGISTRY.walk()}


def sync(home: Path) -> None:
    done = subprocess.run([str(CIVICNET), "sync", "--home", str(home)], capture_output=True, text=True,
                          check=False, timeout=900)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("synced ") == len(SYNCED)


def sync_until_killed(home: Path, lines: int, log: Path) -> list[str]:
    """Start `civicnet sync`, SIGKILL it after `lines` nodes are reported; the codes reported."""
    with log.open("w") as err:
        proc = subprocess.Popen([str(CIVICNET), "sync", "--home", str(home)], stdout=subprocess.PIPE,
                                stderr=err, text=True)
        reported: list[str] = []
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("synced "):
                    reported.append(line.split()[1])
                if len(reported) == lines:
                    proc.send_signal(signal.SIGKILL)
                    break
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"sync ended on its own before the kill: {log.read_text()}"
    return reported


@dataclass(frozen=True)
class Runs:
    """The node files (and extracts) of the clean run A and of run B, killed and resumed."""

    reported: list[str]  # nodes B reported synced before the kill
    after_kill: dict[str, NodeState]  # B's nodes right after the kill
    clean: dict[str, NodeState]
    resumed: dict[str, NodeState]
    clean_extracts: dict[str, NodeState]
    resumed_extracts: dict[str, NodeState]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, demo_home: Path, home_copy: Callable[[Path], Path]) -> Runs:
    """Home A, the demo home, synced the change drop cleanly; B, a copy of the round-one home,
    gets the same drop, then a sync with a kill and a second run."""
    root = tmp_path_factory.mktemp("kill")
    a, b = demo_home, home_copy(root / "b")
    generate_changes(b, fraction=0.01)
    outcomes = pipeline.ingest_feed(b, "public_security_residents", AS_OF)
    assert [o["moved"] > 0 for o in outcomes] == [True]
    reported = sync_until_killed(b, KILL_AFTER, root / "killed.log")
    after_kill = read_network(b)
    sync(b)
    return Runs(reported, after_kill, read_network(a), read_network(b),
                read_network(a, "extracts"), read_network(b, "extracts"))


def test_the_kill_lands_mid_way(runs: Runs) -> None:
    # A node with nothing of the change drop in its subtree is not written, so its mark stays where
    # it was (issue 11): "behind" is a node that differs from the clean run, marks included.
    behind = {code for code in SYNCED if runs.after_kill[code] != runs.clean[code]}
    assert len(runs.reported) == KILL_AFTER
    assert not behind & set(runs.reported)  # what was reported had committed
    assert all(runs.after_kill[code] == runs.clean[code] for code in runs.reported)
    assert behind


def test_every_node_ends_exactly_as_after_one_clean_run(runs: Runs) -> None:
    assert runs.clean[CITY].stats.rows["residents"] > 0
    assert len(runs.clean) == len(runs.resumed) == len(SYNCED) + 1
    differing = sorted(code for code in runs.clean if runs.clean[code] != runs.resumed[code])
    assert differing == []


def test_no_node_holds_a_key_twice(runs: Runs) -> None:
    repeated = {code: s.duplicate_keys for code, s in runs.resumed.items() if any(s.duplicate_keys.values())}
    assert repeated == {}


def test_every_extract_ends_equal_to_the_clean_run(runs: Runs) -> None:
    assert runs.clean_extracts == runs.resumed_extracts
    assert {c: s.stats for c, s in runs.resumed_extracts.items()} == {c: s.stats for c, s in runs.resumed.items()}
