"""The pipeline side of a case: the functions the DAG tasks call, in the order the DAGs run them,
without Airflow's per-task overhead (the demo shows that apart).

Every feed is pulled (as each ingest DAG does on its schedule), each landed batch checked
(conform + GX gate) and merged into the city node; then the network DAG's steps: sync every
district's subtree and publish, reconcile every node with its parent, Data Docs and the quality
page. Reconciliation is done inside the sync walk (each node checked while attached); its stage is
the recording of those checks plus their seconds (summed over the walks, divided by the workers
that ran them side by side), taken out of sync+publish so the quality share still counts them.
The network steps run even when no merge changed the city (the idle case): the DAGs would not
wake network_sync then (city_changes is empty), so the bench measures the worse case, a network
run with nothing to do.
"""

from __future__ import annotations

import datetime as dt
import importlib
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from civicnet import pipeline
from civicnet.pipeline.verify import record_walks

AS_OF = dt.date(2021, 6, 30)
FEEDS = ("statistics_divisions", "public_security_residents", "civil_affairs_facilities")
RESIDENTS = "public_security_residents"
# conform (typing, row checks, quarantine), the GX gate, reconciliation across tiers, Data Docs + page
QUALITY_STAGES = ("conform", "gx gate", "reconcile", "quality report")
INGEST_STAGES = ("pull+land", "conform", "gx gate", "merge+report")
T = TypeVar("T")


def _timed(steps: dict[str, float], name: str, fn: Callable[[], T]) -> T:
    start = time.perf_counter()
    result = fn()
    steps[name] = steps.get(name, 0.0) + time.perf_counter() - start
    return result


def ingest(home: Path, slug: str, steps: dict[str, float]) -> list[dict[str, Any]]:
    """pull → check each batch → merge, for one feed; seconds per stage added to `steps`."""
    batch_ids = _timed(steps, "pull+land", lambda: pipeline.pull(home, slug))
    for batch_id in batch_ids:
        checked = _timed(steps, "conform", partial(pipeline.check, home, slug, batch_id, AS_OF))
        steps["conform"] -= checked["seconds"]["gate"]
        steps["gx gate"] = steps.get("gx gate", 0.0) + checked["seconds"]["gate"]
    return _timed(steps, "merge+report", lambda: pipeline.merge(home, slug, batch_ids))


def run_pipeline(home: Path, workers: int) -> dict[str, Any]:
    """One case on the pipeline home: seconds per stage, the residents feed's ingest apart (what the
    peer is compared with), and what the merges changed in the city."""
    steps: dict[str, float] = {}
    # the one-off import of Great Expectations (seconds; each Airflow task process pays it too) is a
    # stage of its own, so no feed's check carries it and the peer's figure (imports left out) compares
    _timed(steps, "imports", lambda: importlib.import_module("quality.gate"))
    residents: dict[str, float] = {}
    outcomes = []
    for slug in FEEDS:
        feed_steps: dict[str, float] = {}
        outcomes += ingest(home, slug, feed_steps)
        for k, v in feed_steps.items():
            steps[k] = steps.get(k, 0.0) + v
        if slug == RESIDENTS:
            residents = feed_steps
    _timed(steps, "sync+publish", lambda: pipeline.sync_network(home, workers=workers, reconcile=False))
    checks = _timed(steps, "reconcile", lambda: record_walks(home))
    moved = checks.seconds / max(1, workers)  # the checks made on the walks ran in `workers` processes at once
    steps["sync+publish"] -= moved
    steps["reconcile"] += moved
    _timed(steps, "quality report", lambda: pipeline.publish_quality_report(home, f"bench-{time.time_ns()}"))
    return {"steps": steps, "residents_ingest": residents, "city_changes": pipeline.city_changes(outcomes)}
