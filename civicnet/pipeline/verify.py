"""`civicnet verify [--repair]`: every node checked against its parent by control totals.

The walk goes city → districts → streets → communities, one DuckDB connection per district
subtree, with every node attached read-only while it is checked (a node that agrees is never
opened for writing, so its file stays byte for byte as it was). Each node's totals are computed
once (one GROUP BY per dataset) and serve both its own check and its children's.

A node is compared with the nearest ancestor that is right: where a street differs from its
district, its communities are compared in those divisions with the district's rows, so a
tampered street is named alone and not its communities with it. With `repair`, the differing
slices of a node are re-copied from its parent before its children are checked against it.
"""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import duckdb

from civicnet import context
from schemas.contract import Contract
from schemas.divisions import Tier, parent_of, subtree_prefix, tier_of
from schemas.errors import TerminalError
from schemas.homefiles import make_folder, write_atomic
from warehouse.extract import publish_extract
from warehouse.network import UNAVAILABLE, SkippedNode, raise_for_skipped, skipped_node
from warehouse.node import attach, connect, detach, high_water_marks, node_errors, node_path
from warehouse.reconcile import (
    WHOLE_NODE,
    Mismatch,
    RepairedSlice,
    TotalsByDivision,
    diff_totals,
    lagging_datasets,
    node_totals,
    repair_slices,
    slices,
)


class ReconciliationError(TerminalError):
    """Nodes still differ from their parents after a sync (and, if asked, a repair)."""


class NoCityNodeError(TerminalError):
    """There is no network to verify yet."""


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


@dataclass(frozen=True)
class _Frame:
    """An attached node of the walk: its high-water marks and the slices where it is known wrong."""

    code: str
    alias: str
    marks: dict[str, int]
    bad: dict[str, set[str]] = field(default_factory=dict)


class _Walk:
    """One verify run: the totals cache, the report, and the walk down the tree."""

    def __init__(self, home: Path, contracts: list[Contract], repair: bool, district: str | None = None) -> None:
        self.home, self.contracts, self.repair = home, contracts, repair
        # walking one district: the city's totals are needed for that district's divisions only
        self.city_prefix = subtree_prefix(district) if district else None
        self.report = VerifyReport(dt.datetime.now(dt.UTC))
        # (node code, tier whose fields are hashed) → totals per dataset, one query per node and tier
        self.cache: dict[tuple[str, Tier], dict[str, TotalsByDivision]] = {}

    def totals(self, con: duckdb.DuckDBPyConnection, frame: _Frame, tier: Tier) -> dict[str, TotalsByDivision]:
        key = (frame.code, tier)
        if key not in self.cache:
            held = [c for c in self.contracts if tier in c.reaches and tier_of(frame.code) in c.reaches]
            prefix = self.city_prefix if tier_of(frame.code) == "city" else None
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
        tier, prefix = tier_of(node.code), subtree_prefix(node.code)
        contracts = [c for c in self.contracts if tier in c.reaches]
        found = lagging_datasets(node.code, contracts, frames[-1].marks, node.marks)
        behind = {m.dataset for m in found}
        have = self.totals(con, node, tier)
        for contract in (c for c in contracts if c.name not in behind):
            found += diff_totals(node.code, contract, self.expected(con, frames, contract.name, tier, prefix),
                                 have[contract.name])
        return found

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
            for child in context.registry().children(code):
                self.visit(con, child.code, frames)
            return
        try:
            for child in context.registry().children(code):
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


def verify_network(home: Path, repair: bool = False, workers: int = 1) -> VerifyReport:
    """Check every node against its parent by control totals; with `repair`, re-copy the slices
    that differ (only those, only in the nodes that differ) and republish those nodes' extracts.

    Districts are walked apart (each reads only its own divisions of the city), in `workers`
    processes when more than one."""
    city = context.city_code()
    if not node_path(home, city).exists():
        raise NoCityNodeError(f"no city node in {home / 'nodes'}: there is no network to verify; "
                              "run `civicnet demo` or the ingest and network DAGs first")
    codes = context.districts()
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            parts = list(pool.map(verify_district, [home] * len(codes), codes, [repair] * len(codes)))
    else:
        parts = [verify_district(home, code, repair) for code in codes]
    report = VerifyReport(min(p.checked_at for p in parts) if parts else dt.datetime.now(dt.UTC))
    for part in parts:
        report.nodes_checked += part.nodes_checked
        report.mismatches += part.mismatches
        report.repaired += part.repaired
        report.remaining += part.remaining
        report.skipped += part.skipped
    return report


def verify_district(home: Path, district: str, repair: bool = False) -> VerifyReport:
    """verify_network for one district's subtree (module level: worker processes call it)."""
    city = context.city_code()
    walk = _Walk(home, context.contracts(), repair, district)
    con = connect()
    try:
        attach(con, node_path(home, city), "ncity", read_only=True)
        walk.visit(con, district, [_Frame(city, "ncity", high_water_marks(con, "ncity"))])
    finally:
        con.close()
    return walk.report


def write_reconciliation(home: Path, report: VerifyReport) -> Path:
    """Write <home>/quality/reconciliation.json atomically; returns its path."""
    path = make_folder(home / "quality") / "reconciliation.json"
    return write_atomic(path, json.dumps(report.to_dict(), ensure_ascii=False, indent=1))


def verify_and_record(home: Path, repair: bool = False, workers: int = 1) -> VerifyReport:
    """verify_network, then write_reconciliation (what the CLI and the sync run)."""
    report = verify_network(home, repair, workers)
    write_reconciliation(home, report)
    return report


def reconcile(home: Path) -> dict[str, Any]:
    """Check-only verify for the network DAG: records the result and raises ReconciliationError
    naming the nodes that differ, so the task fails and alerts."""
    report = verify_and_record(home)
    if report.remaining:
        raise ReconciliationError(
            f"{len(report.remaining)} differences between nodes and their parents after the sync "
            f"(see {home / 'quality' / 'reconciliation.json'}):\n" + _lines(report.remaining, limit=20)
            + "\nrun `civicnet verify --repair` to re-copy the differing slices from the parents"
            + (f"\n{_skipped_lines(report.skipped)}" if report.skipped else ""))
    raise_for_skipped(report.skipped, "every other node was checked and agrees with its parent")
    return {k: v for k, v in report.to_dict().items() if k not in ("mismatches", "remaining")}


def _lines(mismatches: list[Mismatch], limit: int | None = None) -> str:
    shown = mismatches if limit is None else mismatches[:limit]
    lines = [f"  {m.tier} {m.node} (parent {m.parent}) {m.dataset} division {m.division_code}: {m.detail}"
             for m in shown]
    if len(shown) < len(mismatches):
        lines.append(f"  ... and {len(mismatches) - len(shown)} more")
    return "\n".join(lines)


def _skipped_lines(skipped: list[SkippedNode]) -> str:
    return "\n".join([f"{len(skipped)} nodes could not be checked:"]
                     + [f"  {s.cause} {tier_of(s.code)} {s.code}: {s.message}" for s in skipped])


def render(report: VerifyReport) -> str:
    """For people: a summary line, one line per mismatch naming the node, the repairs."""
    nodes = sorted({m.node for m in report.mismatches})
    lines = [f"verify {report.checked_at.isoformat(timespec='seconds')}: {report.nodes_checked} nodes checked "
             f"against their parents, {len(report.mismatches)} mismatches in {len(nodes)} nodes"
             + (f" ({', '.join(nodes)})" if nodes else "")]
    if report.mismatches:
        lines.append(_lines(report.mismatches))
    for r in report.repaired:
        lines.append(f"repaired {tier_of(r.node)} {r.node} {r.dataset} in {len(r.divisions)} divisions "
                     f"from {r.parent}: removed {r.removed} rows, copied {r.copied}")
    if report.skipped:
        lines.append(_skipped_lines(report.skipped))
    if report.agrees:
        lines.append("every node agrees with its parent" + (" after repair" if report.repaired else ""))
    elif report.remaining:
        lines.append(f"{len(report.remaining)} mismatches remain:\n{_lines(report.remaining)}")
    else:
        lines.append("every node checked agrees with its parent; the nodes above were skipped")
    return "\n".join(lines)
