"""`make bench`: the pipeline against the plainest hand-written DuckDB baseline, same input, same run.

Phases, each side in its own subprocess (so peak memory is its own):
  full    — load the division registry, the residents drop and the facilities table, and fill
            every node file of all four tiers;
  change  — a drop changing 1 % of the residents (half of them moving), propagated to all tiers;
  connectors — throughput of the file, SQL and REST connectors (civicnet.bench.connectors).
The pipeline side runs the same functions the DAG tasks call (conform, quarantine, GX gate,
SCD2 merge, ledger, rejection reports, tree sync, extracts, reconciliation, Data Docs and the
quality page), without Airflow's per-task overhead, which the demo shows separately; the
quality stage's share of it is printed per phase. The baseline reads the same files and copies
rows into one DuckDB file per division with no checks, history or logs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

from civicnet import pipeline
from civicnet.pipeline.verify import verify_and_record
from schemas.divisions import load_registry, subtree_prefix
from schemas.layout import feeds_folder, node_file
from schemas.sql import quote_literal

AS_OF = dt.date(2021, 6, 30)
# By default districts sync in as many processes as there are cores (at most 2 here), as the
# network DAG's mapped tasks run; the baseline is one process (DuckDB parallelises its queries).
DEFAULT_WORKERS = min(2, os.cpu_count() or 1)
# conform (typing, row checks, quarantine), the GX gate, reconciliation across tiers, Data Docs + page
QUALITY_STAGES = ("conform", "gx gate", "reconcile", "quality report")
FEEDS = ("statistics_divisions", "public_security_residents", "civil_affairs_facilities")


def _timed(steps: dict[str, float], name: str, fn: Any) -> Any:
    start = time.perf_counter()
    result = fn()
    steps[name] = steps.get(name, 0.0) + time.perf_counter() - start
    return result


def _pipeline(home: Path, phase: str, workers: int) -> dict[str, float]:
    """The ingest DAG's steps for each feed, then the network DAG's; seconds per stage."""
    steps: dict[str, float] = {}
    for slug in FEEDS if phase == "full" else ("public_security_residents",):
        batch_ids = _timed(steps, "pull+land", lambda s=slug: pipeline.pull(home, s))
        for b in batch_ids:
            checked = _timed(steps, "conform", lambda s=slug, b=b: pipeline.check(home, s, b, AS_OF))
            steps["conform"] -= checked["seconds"]["gate"]
            steps["gx gate"] = steps.get("gx gate", 0.0) + checked["seconds"]["gate"]
        _timed(steps, "merge+report", lambda s=slug, ids=batch_ids: pipeline.merge(home, s, ids))
    _timed(steps, "sync+publish", lambda: pipeline.sync_network(home, workers=workers, reconcile=False))
    _timed(steps, "reconcile", lambda: verify_and_record(home, workers=workers))
    _timed(steps, "quality report", lambda: pipeline.publish_quality_report(home, f"bench-{phase}"))
    return steps


def _read_residents(path: Path) -> Any:
    return pacsv.read_csv(path, read_options=pacsv.ReadOptions(encoding="gb18030"),
                          convert_options=pacsv.ConvertOptions(column_types={"公民身份号码": "string",
                                                                             "社区代码": "string"}))


def _baseline(home: Path, feeds: Path, phase: str) -> dict[str, float]:
    """Plain DuckDB: read the files, copy each node's rows into its file. No checks, no history."""
    registry = load_registry()
    con = duckdb.connect()
    residents_dir = feeds / "public_security" / "residents"
    name = "residents_0001_initial.csv" if phase == "full" else "residents_0002_changes.csv"
    con.register("src", _read_residents(residents_dir / name))
    con.execute("CREATE TABLE r AS SELECT * FROM src")
    if phase == "full":
        # DuckDB's sqlite extension cannot be downloaded here: a plain sqlite3 select instead.
        with sqlite3.connect(feeds / "civil_affairs" / "facilities.sqlite") as db:
            cur = db.execute("SELECT * FROM community_facility")
            names = [d[0] for d in cur.description]
            con.register("fsrc", pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in cur]))
        con.execute("CREATE TABLE f AS SELECT * FROM fsrc")
        divisions = quote_literal(f"{feeds}/statistics/divisions/*.csv")
        con.execute(f"CREATE TABLE d AS SELECT * FROM read_csv({divisions}, all_varchar=true)")
    for div in registry.walk():
        path = node_file(home, div.code)
        path.parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"ATTACH {quote_literal(str(path))} AS n (STORAGE_VERSION 'v1.4.0')")
        p = quote_literal(subtree_prefix(div.code))
        if phase == "full":
            con.execute(f"CREATE TABLE n.residents AS SELECT * FROM r WHERE starts_with(社区代码, {p})")
            con.execute(f"CREATE TABLE n.facilities AS SELECT * FROM f WHERE starts_with(comm_code, {p})")
            con.execute(f"CREATE TABLE n.divisions AS SELECT * FROM d WHERE starts_with(code, {p})")
        else:
            con.execute("DELETE FROM n.residents WHERE 公民身份号码 IN (SELECT 公民身份号码 FROM r)")
            con.execute(f"INSERT INTO n.residents SELECT * FROM r WHERE starts_with(社区代码, {p})")
        con.execute("DETACH n")
    con.close()
    return {}


def _child(side: str, phase: str, out: Path, workers: int) -> None:
    """Run one side of one phase in this process; print seconds and peak RSS as JSON."""
    if side == "prepare":
        _prepare(out, float(phase))
        return
    start = time.perf_counter()
    steps = _pipeline(out / "pipeline", phase, workers) if side == "pipeline" else \
        _baseline(out / "baseline", out / "feeds", phase)
    seconds = time.perf_counter() - start
    # Linux keeps ru_maxrss across exec, so the parent stays small: it generates nothing itself.
    # The peak is that of the largest single process: this one or a sync worker.
    peak_kib = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                   resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"side": side, "phase": phase, "seconds": seconds, "peak_mib": peak_kib / 1024,
                      "steps": steps}))


def _run_child(side: str, phase: str, out: Path, workers: int = 1) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "civicnet.bench", "--child", side, phase, "--home", str(out),
                           "--workers", str(workers)],
                          capture_output=True, text=True, check=True)
    lines = proc.stdout.strip().splitlines()
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    return result


def _prepare(out: Path, scale: float) -> None:
    from civicnet.demo.data import generate_changes, generate_feeds

    shutil.rmtree(out, ignore_errors=True)
    feeds_home = out / "pipeline"
    generate_feeds(feeds_home, scale)
    generate_changes(feeds_home, fraction=0.01)
    changes = feeds_folder(feeds_home) / "public_security" / "residents" / "residents_0002_changes.csv"
    parked = out / "residents_0002_changes.csv"
    shutil.move(changes, parked)  # the change drop arrives only in the second phase
    shutil.copytree(feeds_folder(feeds_home), out / "feeds")
    (out / "baseline").mkdir()


def main(argv: list[str] | None = None) -> int:
    """Run both sides of both phases and print times, ratios and peak memory."""
    p = argparse.ArgumentParser(prog="civicnet.bench")
    p.add_argument("--scale", type=float, default=0.1)
    p.add_argument("--home", default="bench-out")
    p.add_argument("--child", nargs=2, metavar=("SIDE", "PHASE"))
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="processes syncing districts")
    args = p.parse_args(argv)
    out = Path(args.home).resolve()
    if args.child:
        _child(args.child[0], args.child[1], out, args.workers)
        return 0
    _run_child("prepare", str(args.scale), out)
    results = []
    for phase in ("full", "change"):
        if phase == "change":
            target = feeds_folder(out / "pipeline") / "public_security" / "residents" / "residents_0002_changes.csv"
            shutil.copy(out / "residents_0002_changes.csv", target)
            shutil.copy(out / "residents_0002_changes.csv", out / "feeds" / "public_security" / "residents")
        base = _run_child("baseline", phase, out)
        pipe = _run_child("pipeline", phase, out, args.workers)
        results.append((phase, pipe, base))
    rows = json.loads((feeds_folder(out / "pipeline") / "planted.json").read_text("utf-8"))["residents"]["rows"]
    print(f"civicnet bench — scale {args.scale}, {rows:,} residents in the drop, {args.workers} sync worker(s), "
          f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"{'phase':<8} {'pipeline s':>11} {'baseline s':>11} {'ratio':>7} {'pipeline peak MiB':>18} "
          f"{'baseline peak MiB':>18}")
    for phase, pipe, base in results:
        print(f"{phase:<8} {pipe['seconds']:>11.1f} {base['seconds']:>11.1f} "
              f"{pipe['seconds'] / base['seconds']:>7.2f} {pipe['peak_mib']:>18.0f} {base['peak_mib']:>18.0f}")
    for phase, pipe, _ in results:
        shares = ", ".join(f"{k} {v:.1f} s ({v / pipe['seconds']:.0%})" for k, v in pipe["steps"].items())
        print(f"pipeline {phase} by stage: {shares}")
        quality = sum(pipe["steps"].get(k, 0.0) for k in QUALITY_STAGES)
        print(f"pipeline {phase} quality stage ({' + '.join(QUALITY_STAGES)}): {quality:.1f} s, "
              f"{quality / pipe['seconds']:.0%} of the pipeline")
    (out / "bench.json").write_text(json.dumps(results, indent=1))
    print("\nconnector throughput (civicnet connector + landing decode vs the plainest code, same data):")
    connectors = subprocess.run([sys.executable, "-m", "civicnet.bench.connectors", str(out)],
                                capture_output=True, text=True, check=True)
    print(connectors.stdout.rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
