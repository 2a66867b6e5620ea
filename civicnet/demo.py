"""`civicnet demo`: generate Shenzhen's feeds and run every DAG through Airflow, twice.

Round one loads the division registry, the residents drop and the facilities database; round
two brings a drop that moves and updates 1 % of the residents, so the summary shows moves
leaving old nodes and reaching new ones. Running it again on the same home changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from civicnet.airflow_runner import run_dag
from schemas.errors import TerminalError

INGEST_ORDER = ("ingest_statistics_divisions", "ingest_public_security_residents",
                "ingest_civil_affairs_facilities")
CHANGES_FILE = "residents_0002_changes.csv"


class DemoHomeError(TerminalError):
    """The home holds a demo of another scale."""


def _ensure_feeds(home: Path, scale: float) -> None:
    from civicnet.demo_data import generate_feeds

    planted = home / "feeds" / "planted.json"
    if planted.exists():
        existing = json.loads(planted.read_text("utf-8"))
        if existing.get("scale") != scale:
            raise DemoHomeError(f"{home} holds a demo at scale {existing.get('scale')}, not {scale}; "
                                "use another --home or remove it (make clean)")
        return
    generate_feeds(home, scale)


def _ensure_changes(home: Path) -> None:
    from civicnet.demo_data import generate_changes

    if not (home / "feeds" / "public_security" / "residents" / CHANGES_FILE).exists():
        generate_changes(home, fraction=0.01, name=CHANGES_FILE)


def steps(home: Path, scale: float) -> list[tuple[str, Callable[[], object]]]:
    """The demo as named steps, in order."""
    def dag(dag_id: str) -> Callable[[], object]:
        return lambda: run_dag(home, dag_id)

    round_one = [(f"run {d}", dag(d)) for d in INGEST_ORDER] + [("run network_sync", dag("network_sync"))]
    round_two = [("generate 1 % resident changes", lambda: _ensure_changes(home)),
                 ("run ingest_public_security_residents", dag("ingest_public_security_residents")),
                 ("run network_sync", dag("network_sync"))]
    return [("generate feeds", lambda: _ensure_feeds(home, scale)), *round_one, *round_two]


def run_demo(home: Path, scale: float, show_progress: bool = True) -> None:
    """Run every step with a progress bar; raises on the first failure."""
    todo = steps(home, scale)
    with tqdm(total=len(todo), disable=not show_progress, unit="step") as bar:
        for name, step in todo:
            bar.set_description(name)
            step()
            bar.update(1)
