"""What became of a pushed batch: its state, counts and quarantined rows, and its rejection report.

A batch is `received` once landed, `processing` while a run holds the city node, `checked` once its
check is staged, and `applied` or `refused` once the city ledger records its decision. The state is
read from staging (the check) and the city node (the decision); the city is read only when no run
of this process is writing it (the runs' `node_lock`) and no other process holds its file.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import duckdb

from civicnet import context
from connectors.feeds import Feed
from quality.rejection import RejectionReport, build_report
from quality.stage import quarantined_rows as staged_quarantine
from quality.stage import read_check, stage_dir
from schemas.contract import Contract
from schemas.i18n import DEFAULT_LANG
from warehouse import landing
from warehouse.merge import BatchOutcome, ledger_entry
from warehouse.node import NodeLockedError
from warehouse.status import quarantined_rows
from warehouse.stores import store_of

REPORT_ROWS = 1000  # quarantined rows listed in a status answer; the counts always cover all
T = TypeVar("T")
Decision = tuple[BatchOutcome, list[dict[str, Any]]]
# a pushed batch's state, as its sender polls it: landed, checked, being merged, then decided
BatchState = Literal["received", "checked", "processing", "applied", "refused"]


class Runs(Protocol):
    """What the status of a batch needs to know of the runs that ingest batches (the gateway's trigger)."""

    # held while a run writes the city node: the ledger is read only when it can be taken
    node_lock: threading.Lock

    def last_error(self, batch_id: str) -> str | None:
        """Why the last run that took this batch failed, if it did."""


def city_read(home: Path, runs: Runs, read: Callable[[duckdb.DuckDBPyConnection], T]) -> tuple[T | None, bool]:
    """(what `read` finds in the city node, whether the node was busy and could not be read)."""
    if not runs.node_lock.acquire(blocking=False):
        return None, True
    try:
        if not store_of(home, context.city_code()).exists():
            return None, False
        try:
            con = context.open_city(home, read_only=True)
        except NodeLockedError:  # a merge in another process holds the file: DuckDB allows one writer
            return None, True
        try:
            return read(con), False
        finally:
            con.close()
    finally:
        runs.node_lock.release()


def _city_decision(home: Path, batch_id: str, runs: Runs) -> tuple[Decision | None, bool]:
    """((the city ledger row of a batch, its quarantined rows), whether the city node was busy and could
    not be read). The rows are read from the city, not staging: the merge may quarantine more
    (`key_owned_elsewhere`)."""
    def read(con: duckdb.DuckDBPyConnection) -> Decision | None:
        entry = ledger_entry(con, "city", batch_id)
        return None if entry is None else (entry, quarantined_rows(con, "city", batch_id, REPORT_ROWS))

    return city_read(home, runs, read)


def _staged_rows(stage: Path) -> list[dict[str, Any]]:
    """The first quarantined rows of a staged check (before the city decided)."""
    held = staged_quarantine(stage)
    if held is None:
        return []
    return [{"line": r["_line"], "reasons": r["reasons"], "raw": json.loads(r["raw"]) if r["raw"] else None}
            for r in held.slice(0, REPORT_ROWS).to_pylist()]


def batch_status(home: Path, receipt: dict[str, Any], runs: Runs) -> dict[str, Any]:
    """A batch's state from staging (its check) and the city ledger (its decision): the receipt with
    `status`, `counts`, `gate`, `error`, `quarantined_rows` and, once decided, `report` (its URL)."""
    batch_id = receipt["batch_id"]
    stage = stage_dir(home, batch_id)
    check = read_check(stage)
    decision, busy = _city_decision(home, batch_id, runs)
    entry, rows = decision if decision is not None else (None, _staged_rows(stage))
    state: BatchState
    if entry is not None:
        state = entry.status
        counts = {k: getattr(entry, k) for k in ("received", "applied", "quarantined", "duplicates", "held")}
    else:
        state = "processing" if busy else "checked" if check else "received"
        counts = {"received": receipt["rows"], "applied": None, "held": None,
                  "quarantined": check.quarantined if check else None,
                  "duplicates": check.duplicates if check else None}
    gate = check.gate if check else {}
    error = gate.get("error") or (None if entry else runs.last_error(batch_id))
    report = {"report": f"/v1/batches/{batch_id}/report"} if entry is not None else {}
    return receipt | {"status": state, "counts": counts, "gate": gate.get("verdict"), "error": error,
                      "quarantined_rows": rows} | report


def batch_report(home: Path, runs: Runs, receipt: dict[str, Any], feeds: Mapping[str, Feed],
                 contracts: Mapping[str, Contract], lang: str = DEFAULT_LANG) -> tuple[RejectionReport | None, bool]:
    """(the rejection report of a decided batch, or None if the city has not decided it; whether the
    city node was busy). `feeds` are the push feeds by dataset: a batch of the dataset's current feed
    names its source columns as that feed maps them."""
    def build(con: duckdb.DuckDBPyConnection) -> RejectionReport | None:
        if ledger_entry(con, "city", receipt["batch_id"]) is None:
            return None
        manifest = landing.read_manifest(home, receipt["dataset"], receipt["batch_id"])
        feed = feeds.get(manifest.dataset)
        mapping = context.source_mapping(feed) if feed is not None and feed.slug == manifest.feed else None
        return build_report(con, "city", manifest.batch_id, manifest, mapping, contracts.get(manifest.dataset),
                            lang=lang)

    return city_read(home, runs, build)
