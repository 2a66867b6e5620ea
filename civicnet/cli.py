"""The civicnet command line: demo, status, sync, ingest."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from civicnet.settings import Settings
from schemas.errors import CivicnetError


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from civicnet import status
    from civicnet.demo import run_demo

    run_demo(settings.home, args.scale)
    print(status.render(status.collect(settings.home)))
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from civicnet import status

    collected = status.collect(settings.home)
    print(json.dumps(collected, ensure_ascii=False, indent=1) if args.json else status.render(collected))
    return 0


def _sync(args: argparse.Namespace, settings: Settings) -> int:
    """Sync districts without Airflow (an engineer re-syncing a node; the kill test)."""
    from civicnet import pipeline

    if args.district:
        for code in args.district:
            pipeline.sync_district(settings.home, code, on_node=report_node)
    else:
        print(pipeline.sync_network(settings.home, on_node=report_node, workers=args.workers))
    return 0


def report_node(code: str, results: list[object]) -> None:
    """One line per synced node (module-level so worker processes can call it)."""
    print(f"synced {code} ({len(results)} datasets changed)", flush=True)


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from civicnet.airflow_runner import run_dag

    print(run_dag(settings.home, f"ingest_{args.feed}"))
    return 0


def parser() -> argparse.ArgumentParser:
    """The argument parser (also used by tests)."""
    p = argparse.ArgumentParser(prog="civicnet", description=__doc__)
    p.add_argument("--home", help="civicnet home (default $CIVICNET_HOME or ./var)")
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="generate feeds and run every DAG through Airflow")
    demo.add_argument("--scale", type=float, default=0.002, help="1.0 = 17.56 million residents")
    status = sub.add_parser("status", help="nodes, extracts, rows, quarantine and batches")
    status.add_argument("--json", action="store_true")
    sync = sub.add_parser("sync", help="sync districts' subtrees from the city without Airflow")
    sync.add_argument("--district", action="append", help="a district code (repeatable; default all)")
    sync.add_argument("--workers", type=int, default=1, help="districts synced in parallel processes")
    ingest = sub.add_parser("ingest", help="run one feed's ingest DAG through Airflow")
    ingest.add_argument("feed", help="feed slug, e.g. public_security_residents")
    for sp in (demo, status, sync, ingest):
        sp.add_argument("--home", default=argparse.SUPPRESS, help="civicnet home")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `civicnet`."""
    args = parser().parse_args(argv)
    settings = Settings.from_env(getattr(args, "home", None))
    handlers = {"demo": _demo, "status": _status, "sync": _sync, "ingest": _ingest}
    try:
        return handlers[args.command](args, settings)
    except CivicnetError as err:
        print(f"civicnet: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
