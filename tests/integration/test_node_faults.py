"""One locked or damaged node no longer stops the network: `civicnet sync` and `civicnet verify
--repair` go on with the other nodes and name the ones they skipped, with the cause and the fix;
`civicnet rebuild-node` rebuilds a damaged node from its nearest healthy ancestor.

Each test copies the city and the 盐田 district (30 nodes) of the session's demo home, so a walk
takes seconds; the demo home's own files are the reference a re-made node must equal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from civicnet import cli, context, pipeline
from schemas.divisions import subtree_prefix, tier_of
from warehouse.extract import extract_path
from warehouse.node import NodeCorruptError, NodeLockedError, attach, connect, detach
from warehouse.stats import NodeStats, node_stats
from warehouse.stores import node_path

pytestmark = pytest.mark.slow  # walks a district's node files several times (seconds)

YANTIAN = "440308000000"  # 盐田区
MEISHA = "440308001000"  # 梅沙街道, the first street of the walk
SHATOUJIAO = "440308003000"  # 沙头角街道
HAISHAN = "440308004000"  # 海山街道, walked after the others
CONTRACTS = context.contracts()


def district_home(demo_home: Path, dest: Path, district: str = YANTIAN) -> Path:
    """A home holding the city and one district's nodes and extracts of the demo home (times kept,
    so no extract is stale)."""
    for folder in ("nodes", "extracts"):
        for path in sorted((demo_home / folder).glob("*/*.duckdb")):
            if path.parent.name == "city" or path.name.startswith(subtree_prefix(district)):
                target = dest / path.relative_to(demo_home)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    return dest


def stats(home: Path, code: str) -> NodeStats:
    con = connect()
    try:
        attach(con, node_path(home, code), "n", read_only=True)
        found = node_stats(con, "n", code, CONTRACTS)
        detach(con, "n")
        return found
    finally:
        con.close()


def busiest_community(home: Path, street: str) -> str:
    """The community of `street` holding the most rows (a re-made copy of it proves something)."""
    children = [c.code for c in context.registry().children(street)]
    return max(children, key=lambda c: sum(stats(home, c).rows.values()))


@contextmanager
def held_open(path: Path) -> Iterator[int]:
    """Another process holding the node file open with DuckDB's write lock, as an analyst's
    `duckdb.connect(path)` does; yields its PID."""
    proc = subprocess.Popen([sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(path)!r}); "
                             "print('open', flush=True); sys.stdin.read()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def sync(home: Path) -> int:
    return cli.main(["sync", "--home", str(home), "--district", YANTIAN])


def test_a_locked_node_is_skipped_and_named_while_every_other_node_syncs(
        demo_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = district_home(demo_home, tmp_path)
    below, later = busiest_community(demo_home, MEISHA), busiest_community(demo_home, HAISHAN)
    for code in (below, later):  # two nodes the sync must make again, one under the locked street
        node_path(home, code).unlink()
        extract_path(home, code).unlink()
    with held_open(node_path(home, MEISHA)) as pid:
        assert sync(home) == 2
        out = capsys.readouterr()
        with pytest.raises(NodeLockedError, match=MEISHA):  # the DAG's district task: transient, retried
            pipeline.sync_district(home, YANTIAN)
    assert f"locked street {MEISHA}" in out.err and f"PID {pid}" in out.err and "close that session" in out.err
    synced = {line.split()[1] for line in out.out.splitlines() if line.startswith("synced ")}
    yantian = {d.code for d in context.registry().walk() if d.code.startswith(subtree_prefix(YANTIAN))}
    assert synced == yantian - {MEISHA}
    for code in (below, later):  # synced in full (the one under the locked street from the district)
        assert stats(home, code) == stats(demo_home, code)
        assert extract_path(home, code).exists()
    assert sync(home) == 0  # the lock released, a retry syncs the street too


def test_a_damaged_node_is_named_with_the_fix_and_rebuilding_it_restores_it(
        demo_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = district_home(demo_home, tmp_path)
    damaged, later = busiest_community(demo_home, SHATOUJIAO), busiest_community(demo_home, HAISHAN)
    path = node_path(home, damaged)
    junk = os.urandom(path.stat().st_size)
    path.write_bytes(junk)
    node_path(home, later).unlink()
    assert sync(home) == 2
    err = capsys.readouterr().err
    assert f"corrupt community {damaged}" in err and "damaged" in err and f"civicnet rebuild-node {damaged}" in err
    assert stats(home, later) == stats(demo_home, later)  # the walk went on after it
    with pytest.raises(NodeCorruptError, match=damaged):  # the DAG's district task: terminal, not retried
        pipeline.sync_district(home, YANTIAN)

    assert cli.main(["rebuild-node", damaged, "--home", str(home)]) == 0
    assert f"rebuilt {damaged} from {SHATOUJIAO}" in capsys.readouterr().out
    assert stats(home, damaged) == stats(demo_home, damaged)
    kept = list(path.parent.glob(f"{path.name}.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == junk  # moved aside, never deleted
    assert sync(home) == 0


def test_verify_repair_repairs_the_other_nodes_and_names_a_truncated_one(
        demo_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    home = district_home(demo_home, tmp_path)
    monkeypatch.setattr(context, "districts", lambda: [YANTIAN])  # verify walks this district only
    tampered = busiest_community(demo_home, HAISHAN)
    con = connect()
    attach(con, node_path(home, tampered), "n")
    con.execute("DELETE FROM n.residents WHERE rowid = (SELECT min(rowid) FROM n.residents)")
    detach(con, "n")
    con.close()
    street = node_path(home, SHATOUJIAO)
    street.write_bytes(street.read_bytes()[: street.stat().st_size // 2])

    assert cli.main(["verify", "--home", str(home), "--repair"]) == 1
    out = capsys.readouterr().out
    assert f"corrupt street {SHATOUJIAO}" in out and f"civicnet rebuild-node {SHATOUJIAO}" in out
    assert f"repaired community {tampered} residents" in out
    assert stats(home, tampered) == stats(demo_home, tampered)
    recorded = json.loads((home / "quality" / "reconciliation.json").read_text("utf-8"))
    assert [(s["node"], s["cause"]) for s in recorded["skipped"]] == [(SHATOUJIAO, "corrupt")]
    assert recorded["remaining"] == [] and recorded["agrees"] is False
    # the street's communities were checked against the district
    assert recorded["nodes_checked"] == sum(1 for d in context.registry().walk()
                                            if d.code.startswith(subtree_prefix(YANTIAN))) - 1
    assert tier_of(SHATOUJIAO) == "street"
