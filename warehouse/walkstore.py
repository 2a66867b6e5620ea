"""The record of a district's last sync walk: the reconciliation it did and the totals it used.

The sync walk checks every node of a district's subtree as it passes it (warehouse.check) and
writes one file per district (schemas.layout.walk_file): the report, for the network DAG's
reconcile step, and the control totals of every node, so that the next walk takes a node's
totals from here instead of scanning it again, if its file has not been written since.

"Not written since" is read from the files' times, as the network index's stats are: the record
is written after every node of its walk is detached, so a node file older than it (and with no
write-ahead log beside it) holds what its totals say. A node written later — synced, repaired,
rebuilt, or edited by hand — is newer, and is scanned again. Only counts, sums of measures and
hashes of divisions are kept here: no row, no personal data.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from schemas.divisions import Tier
from schemas.homefiles import make_folder, write_atomic
from warehouse.check import KnownTotals, NodeTotals, VerifyReport
from warehouse.node import node_path
from warehouse.reconcile import Totals

FORMAT = 1


def _encode(totals: NodeTotals) -> dict[str, Any]:
    return {dataset: {division: [t.rows, [str(m) for m in t.measures], str(t.hash)] for division, t in by.items()}
            for dataset, by in totals.items()}


def _decode(raw: dict[str, Any]) -> NodeTotals:
    return {dataset: {division: Totals(int(n), tuple(Decimal(m) for m in ms), int(h))
                      for division, (n, ms, h) in by.items()}
            for dataset, by in raw.items()}


def write_walk(path: Path, layout: str, report: VerifyReport, cache: dict[tuple[str, Tier], NodeTotals]) -> Path:
    """Write a walk's record atomically (after every node of the walk is detached)."""
    nodes: dict[str, dict[str, Any]] = {}
    for (code, tier), totals in sorted(cache.items()):
        nodes.setdefault(code, {})[tier] = _encode(totals)
    record = {"format": FORMAT, "layout": layout, "report": report.to_dict(), "totals": nodes}
    make_folder(path.parent)
    return write_atomic(path, json.dumps(record, ensure_ascii=False, separators=(",", ":")))


def _read(path: Path) -> tuple[dict[str, Any], int] | None:
    try:
        written = path.stat().st_mtime_ns
        record: dict[str, Any] = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None
    return record, written


def read_walk_report(path: Path) -> VerifyReport | None:
    """The reconciliation of a district's last sync walk (None if there is no readable record)."""
    found = _read(path)
    try:
        return None if found is None else VerifyReport.from_dict(found[0]["report"])
    except (KeyError, TypeError, ValueError):
        return None


def known_totals(path: Path, home: Path, layout: str) -> KnownTotals:
    """The totals a district's last walk recorded for a node whose file has not been written
    since (None for any other node, or if the record is missing, unreadable or of another layout)."""
    found = _read(path)
    stored: dict[str, Any] = {}
    written = 0
    if found is not None and found[0].get("layout") == layout and isinstance(found[0].get("totals"), dict):
        stored, written = found[0]["totals"], found[1]

    def lookup(code: str, tier: Tier) -> NodeTotals | None:
        raw = stored.get(code, {}).get(tier)
        if raw is None or not _unchanged(node_path(home, code), written):
            return None
        try:
            return _decode(raw)
        except (TypeError, ValueError, ArithmeticError):
            return None
    return lookup


def _unchanged(path: Path, since: int) -> bool:
    try:
        if path.with_name(f"{path.name}.wal").exists():
            return False  # a write-ahead log holds commits the file's time does not show
        return path.stat().st_mtime_ns < since
    except OSError:
        return False
