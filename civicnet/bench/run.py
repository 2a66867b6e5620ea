"""`make bench`: the pipeline against two hand-written baselines and the dlt peer, same input, same run.

For every work case (civicnet.bench.cases) each side runs in its own subprocess, measured by
civicnet.bench.measure: the pipeline (civicnet.bench.pipeline_side), the fan-out and relay
baselines (civicnet.bench.baselines), and, where a drop arrives and .venv-dlt exists, the peer
(civicnet.bench.peer); for the full load and the 1 % change, the same pipeline with every node on
PostgreSQL (civicnet.bench.stores_side) unless --no-server-stores. The invariants are checked on
the pipeline homes after every case. The
tables are printed (civicnet.bench.report) and every figure written to <home>/results.json; then
the connectors' throughput (civicnet.bench.connectors) unless --no-connectors, and the
push-to-community latency on the embedded and the Celery Airflow (civicnet.bench.push_latency)
unless --no-push-latency.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from civicnet.bench import cases, report, stores_side
from civicnet.bench.measure import run_measured

# By default districts sync in as many processes as there are cores (at most 2 here), as the
# network DAG's mapped tasks run; the baselines are one process (DuckDB parallelises its queries).
DEFAULT_WORKERS = min(2, os.cpu_count() or 1)
PEER_VENV = Path(".venv-dlt")
PEER_SCRIPT = Path(__file__).with_name("peer.py")
LOCKED_SCALE = 0.5  # a process of a run this big may take GBs: one such run at a time on a shared machine


def hold_lock(path: Path | None, scale: float) -> Any:
    """The open lock file, held (flock, waiting for it) when `path` is given and the scale is big."""
    if path is None or scale < LOCKED_SCALE:
        return None
    handle = path.open("a")
    print(f"waiting for {path} (scale {scale})...", file=sys.stderr, flush=True)
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def _child(side: str, case: str, out: Path, args: argparse.Namespace, homes: tuple[Path, ...] = ()) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "civicnet.bench", "--child", side, case, "--home", str(out),
           "--workers", str(args.workers), "--cases", ",".join(args.cases)]
    return run_measured(cmd, homes=homes)


def _peer_python(choice: str) -> Path | None:
    """The dlt environment's Python, or None (with why, printed) when the peer is skipped."""
    if choice == "none":
        return None
    python = (PEER_VENV if choice == "auto" else Path(choice)) / "bin" / "python"
    if not python.exists():
        print(f"peer skipped: {python} does not exist (`make bench` creates .venv-dlt with dlt)", file=sys.stderr)
        return None
    return python.absolute()


def _peer(python: Path, out: Path, case: cases.Case) -> dict[str, Any]:
    drop = cases.residents_dir(out) / (case.drop or "residents_0001_initial.csv")
    config = yaml.safe_load((resources.files("connectors") / "feeds" / "public_security_residents.yaml")
                            .read_text(encoding="utf-8"))
    cmd = [str(python), "-P", str(PEER_SCRIPT), "--drop", str(drop), "--db", str(out / "peer" / "dlt.duckdb"),
           "--state", str(out / "peer" / "state"), "--columns", json.dumps(config["fields"], ensure_ascii=False)]
    (out / "peer").mkdir(exist_ok=True)
    return run_measured(cmd)


def run_case(case: cases.Case, out: Path, args: argparse.Namespace, peer: Path | None) -> dict[str, Any]:
    """Every side of one case, in order: baselines, pipeline, peer; then the invariants."""
    cases.bring_drop(out, case.name)
    on_server = args.server_stores and case.name in stores_side.CASES
    if on_server and case.drop:
        stores_side.bring_drop(out, cases.residents_dir(out) / case.drop)
    load = os.getloadavg()
    sides = {side: _child(side, case.name, out, args, homes=(out / side,)) for side in ("fanout", "relay", "pipeline")}
    if on_server:
        sides[stores_side.SIDE] = _child(stores_side.SIDE, case.name, out, args, homes=(out / stores_side.HOME,))
    if peer is not None and case.name != "idle":
        sides["peer"] = _peer(peer, out, case)
    checked = _child("invariants", case.name, out, args) if args.check else None
    checked_pg = _child("invariants_pg", case.name, out, args) if args.check and on_server else None
    return {"case": case.name, "title": case.title, "load_before": load, "load_after": os.getloadavg(),
            "sides": sides, "invariants": checked, "invariants_pg": checked_pg}


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    return {"nproc": os.cpu_count(), "mem_gib": round(mem / 2**20, 1), "cpu": cpu}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="civicnet.bench")
    p.add_argument("--scale", type=float, default=0.1)
    p.add_argument("--home", default="bench-out")
    p.add_argument("--cases", default=",".join(cases.CASE_NAMES),
                   help="comma-separated, starting with full: " + ", ".join(cases.CASE_NAMES))
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="processes syncing districts")
    p.add_argument("--peer", default="auto", help="auto (.venv-dlt if present), none, or a venv folder")
    p.add_argument("--no-check", dest="check", action="store_false", help="skip the invariants after each case")
    p.add_argument("--no-connectors", dest="connectors", action="store_false")
    p.add_argument("--no-push-latency", dest="push_latency", action="store_false",
                   help="skip the push-to-community latency on Airflow standalone and the Celery service")
    p.add_argument("--no-server-stores", dest="server_stores", action="store_false",
                   help="skip the pipeline on PostgreSQL node stores (full load and 1 % change)")
    p.add_argument("--server", default=stores_side.DEFAULT_SERVER,
                   help=f"the PostgreSQL server of that side (its database {stores_side.DATABASE} is made anew)")
    p.add_argument("--lock", type=Path, help=f"a file to hold (flock) while a run at scale >= {LOCKED_SCALE} goes")
    p.add_argument("--child", nargs=2, metavar=("SIDE", "CASE"))
    args = p.parse_args(argv)
    args.cases = tuple(c for c in args.cases.split(",") if c)
    unknown = set(args.cases) - set(cases.CASE_NAMES)
    if unknown or not args.cases or args.cases[0] != "full":
        p.error(f"--cases must start with full and name only {', '.join(cases.CASE_NAMES)} (got {args.cases})")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run every case's sides; print the tables; write <home>/results.json."""
    args = parse(argv)
    out = Path(args.home).resolve()
    if args.child:
        from civicnet.bench.child import run_child

        run_child(args.child[0], args.child[1], out, args.workers, args.cases)
        return 0
    lock = hold_lock(args.lock, args.scale)  # noqa: F841 - held until this process ends
    peer = _peer_python(args.peer)
    started = dt.datetime.now(dt.UTC)
    prepared = _child("prepare", str(args.scale), out, args)
    server_url = stores_side.prepare_server_home(out, args.server) if args.server_stores else None
    results = {"scale": args.scale, "started": started.isoformat(timespec="seconds"), "machine": machine(),
               "workers": args.workers, "peer": str(peer) if peer else None, "prepare_s": prepared["seconds"],
               "drops": prepared["drops"], "cases": [run_case(cases.case(c), out, args, peer) for c in args.cases]}
    if server_url is not None:
        results["transport"] = stores_side.transport(stores_side.city_residents(out / "pipeline"), server_url)
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    print(report.render(results))
    if server_url is not None:
        print("\nnode stores (the same pipeline, every node a DuckDB file vs a PostgreSQL schema):")
        print("\n".join(stores_side.render(results)))
    print(f"\nevery figure: {out / 'results.json'}")
    if args.connectors:
        print("\nconnector throughput (civicnet connector + landing decode vs the plainest code, same data):")
        connectors = subprocess.run([sys.executable, "-m", "civicnet.bench.connectors", str(out / "pipeline")],
                                    capture_output=True, text=True, check=True)
        print(connectors.stdout.rstrip())
    if args.push_latency:
        from civicnet.bench import push_latency

        results["push_latency"] = push_latency.run(out / "pipeline")
        (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
        print("\npush to community extract through the gateway and the scheduler alone:")
        print("\n".join(push_latency.render(results["push_latency"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
