"""The record of a district's last sync walk: the reconciliation it did and the totals it used.

The sync walk checks every node of a district's subtree as it passes it (warehouse.check) and
writes one file per district (schemas.layout.walk_file): the report, for the network DAG's
reconcile step, and the control totals of every node, so that the next walk takes a node's
totals from here instead of scanning it again, if its file has not been written since.

"Not written since" is read from each node file's size and modification time, as the walk saw
them once it was done with the node (after its last write, or while it held it read-only): a
file that still has both (and no write-ahead log beside it) holds what its totals say. A node
written later — synced, repaired, rebuilt, or edited by hand — has another time, and is scanned
again. (A write that kept a file's size and time to the nanosecond would not be seen here:
`civicnet verify` reads every node anew.) Only counts, sums of measures and hashes of divisions
are kept here: no row, no personal data.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from schemas.divisions import Tier
from schemas.homefiles import make_folder, write_atomic
from warehouse.check import KnownTotals, NodeTotals, VerifyReport
from warehouse.reconcile import Totals
from warehouse.stores import node_path

FORMAT = 2
FileStamp = tuple[int, int]  # a file's size and modification time (ns)


def file_stamp(path: Path) -> FileStamp | None:
    """The size and modification time of a node file (None if it cannot be read)."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def _encode(totals: NodeTotals) -> dict[str, Any]:
    return {dataset: {division: [t.rows, [str(m) for m in t.measures], str(t.hash)] for division, t in by.items()}
            for dataset, by in totals.items()}


def _decode(raw: dict[str, Any]) -> NodeTotals:
    return {dataset: {division: Totals(int(n), tuple(Decimal(m) for m in ms), int(h))
                      for division, (n, ms, h) in by.items()}
            for dataset, by in raw.items()}


def write_walk(path: Path, layout: str, report: VerifyReport, cache: dict[tuple[str, Tier], NodeTotals],
               stamps: dict[str, FileStamp]) -> Path:
    """Write a walk's record atomically: its report, and the totals of every node whose file the
    walk saw as `stamps` says (a node without a stamp is left out: the next walk scans it)."""
    nodes: dict[str, dict[str, Any]] = {}
    for (code, tier), totals in sorted(cache.items()):
        if code in stamps:
            nodes.setdefault(code, {"file": list(stamps[code])})[tier] = _encode(totals)
    record = {"format": FORMAT, "layout": layout, "report": report.to_dict(), "totals": nodes}
    make_folder(path.parent)
    return write_atomic(path, json.dumps(record, ensure_ascii=False, separators=(",", ":")))


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record: dict[str, Any] = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None
    return record


def read_walk_report(path: Path) -> VerifyReport | None:
    """The reconciliation of a district's last sync walk (None if there is no readable record)."""
    found = _read(path)
    try:
        return None if found is None else VerifyReport.from_dict(found["report"])
    except (KeyError, TypeError, ValueError):
        return None


def known_totals(path: Path, home: Path, layout: str) -> KnownTotals:
    """The totals a district's last walk recorded for a node whose file has not been written
    since (None for any other node, or if the record is missing, unreadable or of another layout)."""
    found = _read(path)
    stored: dict[str, Any] = {}
    if found is not None and found.get("layout") == layout and isinstance(found.get("totals"), dict):
        stored = found["totals"]

    def lookup(code: str, tier: Tier) -> NodeTotals | None:
        entry = stored.get(code)
        if not isinstance(entry, dict) or tier not in entry or not _unchanged(node_path(home, code), entry.get("file")):
            return None
        try:
            return _decode(entry[tier])
        except (TypeError, ValueError, ArithmeticError):
            return None
    return lookup


def _unchanged(path: Path, seen: Any) -> bool:
    if path.with_name(f"{path.name}.wal").exists():
        return False  # a write-ahead log holds commits the file does not show
    stamp = file_stamp(path)
    return stamp is not None and isinstance(seen, list) and list(stamp) == seen
