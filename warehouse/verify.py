"""Verify and repair: every node of a subtree checked against its parent by control totals.

The walk goes down from a subtree's root (a district, under the city) to its communities, on one
DuckDB connection, with every node attached read-only while it is checked (a node that agrees is
never opened for writing, so its file stays byte for byte as it was). Each node's totals are
computed once (one GROUP BY per dataset) and serve both its own check and its children's; the
comparison itself is `warehouse.reconcile.compare_node`.

A node is compared with the nearest ancestor that is right: where a street differs from its
district, its communities are compared in those divisions with the district's rows, so a
tampered street is named alone and not its communities with it. With `repair`, the differing
slices of a node are re-copied from its parent before its children are checked against it.
The registry and the contracts are passed in: nothing here reads configuration.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from schemas.contract import Contract
from schemas.divisions import Registry, Tier, parent_of, subtree_prefix, tier_of
from warehouse.extract import publish_extract
from warehouse.network import UNAVAILABLE, SkippedNode, skipped_node
from warehouse.node import attach, connect, detach, high_water_marks, node_errors, node_path
from warehouse.reconcile import (
    WHOLE_NODE,
    Mismatch,
    RepairedSlice,
    TotalsByDivision,
    compare_node,
    node_totals,
    repair_slices,
    slices,
)
from warehouse.sync import pending_datasets


@dataclass
class VerifyReport:
    """What a verify run checked, found, repaired, and what still differs."""

    checked_at: dt.datetime
    nodes_checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    repaired: list[RepairedSlice] = field(default_factory=list)
    remaining: list[Mismatch] = field(default_factory=list)
    skipped: list[SkippedNode] = field(default_factory=list)  # nodes that could not be opened

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
                            for s in self.skipped]}

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
                   [SkippedNode(s["node"], s["cause"], s["message"]) for s in d.get("skipped", [])])


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
    return report


@dataclass(frozen=True)
class _Frame:
    """An attached node of the walk: its high-water marks and the slices where it is known wrong."""

    code: str
    alias: str
    marks: dict[str, int]
    bad: dict[str, set[str]] = field(default_factory=dict)


class _Walk:
    """One verify run: the totals cache, the report, and the walk down the tree."""

    def __init__(self, home: Path, registry: Registry, contracts: list[Contract], repair: bool,
                 root: str) -> None:
        self.home, self.registry, self.contracts, self.repair = home, registry, contracts, repair
        # the root's parent is read for the root's divisions only (a district's, of the city)
        self.top, self.top_prefix = registry.get(root).parent_code, subtree_prefix(root)
        self.report = VerifyReport(dt.datetime.now(dt.UTC))
        # (node code, tier whose fields are hashed) → totals per dataset, one query per node and tier
        self.cache: dict[tuple[str, Tier], dict[str, TotalsByDivision]] = {}

    def totals(self, con: duckdb.DuckDBPyConnection, frame: _Frame, tier: Tier) -> dict[str, TotalsByDivision]:
        key = (frame.code, tier)
        if key not in self.cache:
            held = [c for c in self.contracts if tier in c.reaches and tier_of(frame.code) in c.reaches]
            prefix = self.top_prefix if frame.code == self.top else None
            self.cache[key] = node_totals(con, frame.alias, held, tier, prefix)
        return self.cache[key]

    def forget(self, code: str) -> None:
        for key in [k for k in self.cache if k[0] == code]:
            del self.cache[key]

    def expected(self, con: duckdb.DuckDBPyConnection, frames: list[_Frame], dataset: str, tier: Tier,
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

    def check(self, con: duckdb.DuckDBPyConnection, frames: list[_Frame], node: _Frame) -> list[Mismatch]:
        """compare_node of a node with the totals its parent (or the nearest right ancestor) implies."""
        tier, prefix = tier_of(node.code), subtree_prefix(node.code)
        held = [c for c in self.contracts if tier in c.reaches]
        expected = {c.name: self.expected(con, frames, c.name, tier, prefix) for c in held}
        # a mark below the parent's is `behind` only if the parent has newer changes in this subtree
        pending = set(pending_datasets(con, node.alias, frames[-1].alias, node.code, held))
        marks = {d: m if d in pending else min(m, node.marks.get(d, 0)) for d, m in frames[-1].marks.items()}
        return compare_node(node.code, held, marks, node.marks, expected, self.totals(con, node, tier))

    def fix(self, con: duckdb.DuckDBPyConnection, frames: list[_Frame], node: _Frame,
            found: list[Mismatch]) -> None:
        """Re-copy the differing slices from the parent, publish the node's extract again."""
        by_name = {c.name: c for c in self.contracts}
        detach(con, node.alias)
        attach(con, node_path(self.home, node.code), node.alias)
        try:
            for dataset, divisions in sorted(slices(found).items()):
                self.report.repaired.append(
                    repair_slices(con, frames[-1].alias, node.alias, node.code, by_name[dataset], divisions))
        finally:
            detach(con, node.alias)
            attach(con, node_path(self.home, node.code), node.alias, read_only=True)
        publish_extract(self.home, node.code)
        self.forget(node.code)

    def visit(self, con: duckdb.DuckDBPyConnection, code: str, frames: list[_Frame]) -> None:
        """Check (and repair) one node, then its children against it. A node that cannot be opened
        is reported as skipped and its children are checked against the nearest ancestor read."""
        path = node_path(self.home, code)
        if not path.exists():
            missing = Mismatch(code, tier_of(code), parent_of(code), WHOLE_NODE, WHOLE_NODE, "missing", "", "")
            self.report.mismatches.append(missing)
            self.report.remaining.append(missing)
            return
        alias = f"n{code}"
        try:
            with node_errors(path):
                node = self.open_and_check(con, frames, code, alias)
        except UNAVAILABLE as err:
            self.report.skipped.append(skipped_node(code, err))
            self.forget(code)
            if _attached(con, alias):
                detach(con, alias)
            for child in self.registry.children(code):
                self.visit(con, child.code, frames)
            return
        try:
            for child in self.registry.children(code):
                self.visit(con, child.code, [*frames, node])
        finally:
            detach(con, alias)
            self.forget(code)

    def open_and_check(self, con: duckdb.DuckDBPyConnection, frames: list[_Frame], code: str,
                       alias: str) -> _Frame:
        """Attach a node read-only, check it (repair it if asked) and leave it attached."""
        attach(con, node_path(self.home, code), alias, read_only=True)
        node = _Frame(code, alias, high_water_marks(con, alias))
        found = remaining = self.check(con, frames, node)
        if self.repair and slices(found):
            self.fix(con, frames, node, found)
            remaining = self.check(con, frames, node)
        self.report.nodes_checked += 1
        self.report.mismatches += found
        self.report.remaining += remaining
        node.bad.update(slices(remaining))
        return node


def _attached(con: duckdb.DuckDBPyConnection, alias: str) -> bool:
    row = con.execute("SELECT count(*) FROM duckdb_databases() WHERE database_name = ?", [alias]).fetchone()
    return bool(row and row[0])


def verify_subtree(home: Path, registry: Registry, contracts: list[Contract], root: str,
                   repair: bool = False) -> VerifyReport:
    """Check `root` (a district, street or community) and every node below it against its parent,
    the root against its own parent (read for the root's divisions only); with `repair`, re-copy
    the slices that differ (only those, only in the nodes that differ) and republish those nodes'
    extracts. The parent of the root must have a node file."""
    parent = registry.get(root).parent_code
    walk = _Walk(home, registry, contracts, repair, root)
    con = connect()
    try:
        attach(con, node_path(home, parent), f"n{parent}", read_only=True)
        walk.visit(con, root, [_Frame(parent, f"n{parent}", high_water_marks(con, f"n{parent}"))])
    finally:
        con.close()
    return walk.report
