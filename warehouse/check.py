"""Checking nodes against their parents by control totals, on a walk that has them attached.

Both walks down a district's subtree check each node as they pass it: the sync walk
(warehouse.network), right after a node is level with its parent — the reconciliation the
network DAG records, with no second pass over the files — and verify's read-only walk
(warehouse.verify), the independent recompute an operator runs, which can also repair. The
`Checker` is what they share: the totals of each attached node (one GROUP BY per node and tier,
kept for its children's checks), the nearest-right-ancestor fallback, and the report.

A node is compared with the nearest ancestor that is right: where a street differs from its
district, its communities are compared in those divisions with the district's rows, so a
tampered street is named alone and not its communities with it.

`known` may give a node's totals from an earlier walk when its file has not been written since
(warehouse.walkstore): a node the sync did not touch is not scanned again.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb

from schemas.contract import Contract
from schemas.divisions import Tier, subtree_prefix, tier_of
from warehouse.reconcile import Mismatch, RepairedSlice, TotalsByDivision, compare_node, node_totals, slices
from warehouse.skipped import SkippedNode
from warehouse.stats import NodeStats
from warehouse.sync import Marks, pending_datasets

NodeTotals = dict[str, TotalsByDivision]  # dataset -> division -> totals
KnownTotals = Callable[[str, Tier], NodeTotals | None]  # (node code, tier whose fields are hashed)


@dataclass
class VerifyReport:
    """What a check of the network found (in a sync walk or a verify run), what was repaired,
    and what still differs."""

    checked_at: dt.datetime
    nodes_checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    repaired: list[RepairedSlice] = field(default_factory=list)
    remaining: list[Mismatch] = field(default_factory=list)
    skipped: list[SkippedNode] = field(default_factory=list)  # nodes that could not be opened
    seconds: float = 0.0  # spent computing and comparing totals, summed over the walks
    scanned: int = 0  # nodes whose totals were computed (the others' came from their last walk)

    @property
    def agrees(self) -> bool:
        """True when no node differs from its parent (any more) and none had to be skipped."""
        return not self.remaining and not self.skipped

    def to_dict(self) -> dict[str, Any]:
        """The report as written to quality/reconciliation.json."""
        def rows(ms: list[Mismatch]) -> list[dict[str, Any]]:
            return [{"node": m.node, "tier": m.tier, "parent": m.parent, "dataset": m.dataset,
                     "division": m.division_code, "what": m.what, "parent_value": m.parent_value,
                     "node_value": m.child_value, "detail": m.detail} for m in ms]
        return {"checked_at": self.checked_at.isoformat(), "nodes_checked": self.nodes_checked,
                "agrees": self.agrees, "mismatches": rows(self.mismatches),
                "repaired": [asdict(r) | {"divisions": list(r.divisions)} for r in self.repaired],
                "remaining": rows(self.remaining),
                "skipped": [{"node": s.code, "tier": tier_of(s.code), "cause": s.cause, "message": s.message}
                            for s in self.skipped],
                "seconds": round(self.seconds, 3), "nodes_scanned": self.scanned}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VerifyReport:
        """Read back `to_dict`'s form (quality/reconciliation.json); a time without offset reads as UTC."""
        def rows(ms: list[dict[str, Any]]) -> list[Mismatch]:
            return [Mismatch(m["node"], m["tier"], m["parent"], m["dataset"], m["division"], m["what"],
                             str(m["parent_value"]), str(m["node_value"])) for m in ms]
        checked = dt.datetime.fromisoformat(d["checked_at"])
        mismatches = rows(d.get("mismatches", []))
        return cls(checked if checked.tzinfo else checked.replace(tzinfo=dt.UTC), int(d.get("nodes_checked", 0)),
                   mismatches,
                   [RepairedSlice(r["node"], r["parent"], r["dataset"], tuple(r["divisions"]), int(r["removed"]),
                                  int(r["copied"])) for r in d.get("repaired", [])],
                   rows(d["remaining"]) if "remaining" in d else list(mismatches),
                   [SkippedNode(s["node"], s["cause"], s["message"]) for s in d.get("skipped", [])],
                   float(d.get("seconds", 0.0)), int(d.get("nodes_scanned", 0)))


def combine_reports(parts: Iterable[VerifyReport]) -> VerifyReport:
    """One report of several subtrees' (checked at the earliest of theirs; now if there are none)."""
    parts = list(parts)
    report = VerifyReport(min(p.checked_at for p in parts) if parts else dt.datetime.now(dt.UTC))
    for part in parts:
        report.nodes_checked += part.nodes_checked
        report.mismatches += part.mismatches
        report.repaired += part.repaired
        report.remaining += part.remaining
        report.skipped += part.skipped
        report.seconds += part.seconds
        report.scanned += part.scanned
    return report


@dataclass(frozen=True)
class Frame:
    """An attached node of a walk: its high-water marks and the slices where it is known wrong."""

    code: str
    alias: str
    marks: Marks
    bad: dict[str, set[str]] = field(default_factory=dict)


class Checker:
    """The checks of one walk down the subtree of `root`: the totals cache and the report."""

    def __init__(self, contracts: list[Contract], top: str, root: str, known: KnownTotals | None = None) -> None:
        self.contracts, self.known = contracts, known
        # the root's parent is read for the root's divisions only (a district's, of the city)
        self.top, self.top_prefix = top, subtree_prefix(root)
        self.report = VerifyReport(dt.datetime.now(dt.UTC))
        # (node code, tier whose fields are hashed) → totals per dataset, one query per node and tier
        self.cache: dict[tuple[str, Tier], NodeTotals] = {}
        self.changed: set[str] = set()  # nodes written on this walk: their earlier totals do not count
        self.read: set[str] = set()  # nodes whose totals this walk computed

    def totals(self, con: duckdb.DuckDBPyConnection, frame: Frame, tier: Tier) -> NodeTotals:
        """The totals of an attached node over the fields of `tier` (computed once per walk)."""
        key = (frame.code, tier)
        if key not in self.cache:
            known = self._same_fields(frame, tier)
            if known is None and self.known is not None and frame.code not in self.changed:
                known = self.known(frame.code, tier)
            if known is None:
                held = [c for c in self.contracts if tier in c.reaches and tier_of(frame.code) in c.reaches]
                prefix = self.top_prefix if frame.code == self.top else None
                known = node_totals(con, frame.alias, held, tier, prefix)
                self._scanned(frame.code)
            self.cache[key] = known
        return self.cache[key]

    def _scanned(self, code: str) -> None:
        if code not in self.read:
            self.read.add(code)
            self.report.scanned += 1

    def _same_fields(self, frame: Frame, tier: Tier) -> NodeTotals | None:
        """A node's totals over another tier's fields, where that tier holds the same fields of
        every dataset as the node's own (the usual case: only personal fields differ by tier)."""
        own = tier_of(frame.code)
        base = self.cache.get((frame.code, own))
        if tier == own or base is None or frame.code == self.top:
            return None
        held = [c for c in self.contracts if tier in c.reaches and own in c.reaches]
        if any([f.name for f in c.fields_for_tier(tier)] != [f.name for f in c.fields_for_tier(own)] for c in held):
            return None
        return {c.name: base[c.name] for c in held}

    def forget(self, code: str, changed: bool = False) -> None:
        """Drop a node's totals (after a repair, `changed`: never take them from an earlier walk)."""
        for key in [k for k in self.cache if k[0] == code]:
            del self.cache[key]
        if changed:
            self.changed.add(code)

    def expected(self, con: duckdb.DuckDBPyConnection, frames: list[Frame], dataset: str, tier: Tier,
                 prefix: str) -> TotalsByDivision:
        """The totals a node of `tier` under `prefix` should have: its parent's, and where the parent
        is known wrong, those of the nearest ancestor that is right."""
        top = frames[-1]
        out = {d: t for d, t in self.totals(con, top, tier)[dataset].items() if d.startswith(prefix)}
        wrong = {d for d in top.bad.get(dataset, ()) if d.startswith(prefix)}
        if wrong and len(frames) > 1:
            above = self.expected(con, frames[:-1], dataset, tier, prefix)
            for d in wrong:
                out.pop(d, None)
                if d in above:
                    out[d] = above[d]
        return out

    def compare(self, con: duckdb.DuckDBPyConnection, frames: list[Frame], node: Frame) -> list[Mismatch]:
        """compare_node of a node with the totals its parent (or the nearest right ancestor) implies."""
        started = time.perf_counter()
        tier, prefix = tier_of(node.code), subtree_prefix(node.code)
        held = [c for c in self.contracts if tier in c.reaches]
        expected = {c.name: self.expected(con, frames, c.name, tier, prefix) for c in held}
        # a mark below the parent's is `behind` only if the parent has newer changes in this subtree
        pending = set(pending_datasets(con, node.alias, frames[-1].alias, node.code, held, node.marks,
                                       frames[-1].marks))
        marks = {d: m if d in pending else min(m, node.marks.get(d, 0)) for d, m in frames[-1].marks.items()}
        found = compare_node(node.code, held, marks, node.marks, expected, self.totals(con, node, tier))
        self.report.seconds += time.perf_counter() - started
        return found

    def record(self, node: Frame, found: list[Mismatch], remaining: list[Mismatch]) -> None:
        """Count a checked node, what it was found to differ in and what still does after any repair."""
        self.report.nodes_checked += 1
        self.report.mismatches += found
        self.report.remaining += remaining
        node.bad.update(slices(remaining))

    def stats(self, con: duckdb.DuckDBPyConnection, frame: Frame) -> NodeStats:
        """A node's rows and checksums per dataset, from its own totals (the checksum of a node is
        the sum of its divisions' hashes: warehouse.stats)."""
        tier = tier_of(frame.code)
        totals = self.totals(con, frame, tier)
        return NodeStats(frame.code, tier, {d: sum(t.rows for t in by.values()) for d, by in totals.items()},
                         {d: str(sum(t.hash for t in by.values())) for d, by in totals.items()})
