"""One side of one case in its own process (so its peak memory is its own): `python -m
civicnet.bench --child SIDE CASE --home OUT`. Prints one JSON line, read by measure.run_measured.

Sides: prepare (the feeds and the parked drops; CASE is the scale), pipeline, pipeline_pg (the
same on PostgreSQL node stores, civicnet.bench.stores_side), fanout, relay, invariants and
invariants_pg (checked on either pipeline home after a case).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from civicnet.bench.measure import write_bytes
from schemas.layout import feeds_folder


def run_child(side: str, case: str, out: Path, workers: int, cases: tuple[str, ...]) -> None:
    start = time.perf_counter()
    result: dict[str, Any]
    if side == "prepare":
        from civicnet.bench.cases import prepare

        result = {"drops": prepare(out, float(case), cases)}
    elif side in ("pipeline", "pipeline_pg"):
        from civicnet.bench.pipeline_side import run_pipeline

        result = run_pipeline(out / side, workers)
    elif side in ("invariants", "invariants_pg"):
        from civicnet.bench.invariants import check

        result = check(out / side.replace("invariants", "pipeline"))
    else:
        from civicnet.bench.baselines import SIDES

        home = out / side
        home.mkdir(parents=True, exist_ok=True)
        result = {"steps": SIDES[side](home, feeds_folder(out / "pipeline"))}
    seconds = time.perf_counter() - start
    print(json.dumps({"side": side, "case": case, "seconds": seconds, "write_bytes": write_bytes()} | result,
                     ensure_ascii=False, default=str))
