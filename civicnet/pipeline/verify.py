"""Reconciliation: every node checked against its parent by control totals, and recorded.

Two ways, one record (<home>/quality/reconciliation.json): the network DAG records the checks
its sync walks made as they passed each node (`reconcile`, `record_walks`: no second pass over
the files), and `civicnet verify [--repair]` checks every node anew (warehouse.verify: the
independent recompute, with repair), over the districts in worker processes when asked. This
module also raises for the network DAG and renders the record for people.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from civicnet import context
from schemas import layout
from schemas.divisions import tier_of
from schemas.errors import TerminalError
from schemas.homefiles import make_folder, write_atomic
from warehouse.check import VerifyReport, combine_reports
from warehouse.reconcile import Mismatch
from warehouse.skipped import SkippedNode, raise_for_skipped
from warehouse.stores import store_of
from warehouse.verify import verify_subtree
from warehouse.walkstore import read_walk_report


class ReconciliationError(TerminalError):
    """Nodes still differ from their parents after a sync (and, if asked, a repair)."""


class NoCityNodeError(TerminalError):
    """There is no network to verify yet."""


def verify_network(home: Path, repair: bool = False, workers: int = 1) -> VerifyReport:
    """Check every node against its parent by control totals; with `repair`, re-copy the slices
    that differ (only those, only in the nodes that differ) and republish those nodes' extracts.

    Districts are walked apart (each reads only its own divisions of the city), in `workers`
    processes when more than one."""
    city = context.city_code()
    if not store_of(home, city).exists():
        raise NoCityNodeError(f"no city node in {layout.nodes_folder(home)}: there is no network to verify; "
                              "run `civicnet demo` or the ingest and network DAGs first")
    codes = context.districts()
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            parts = list(pool.map(verify_district, [home] * len(codes), codes, [repair] * len(codes)))
    else:
        parts = [verify_district(home, code, repair) for code in codes]
    return combine_reports(parts)


def verify_district(home: Path, district: str, repair: bool = False) -> VerifyReport:
    """warehouse.verify.verify_subtree of one district, with the registry and contracts in force
    (module level: worker processes call it, and read those themselves)."""
    return verify_subtree(home, context.registry(), context.contracts(), district, repair)


def write_reconciliation(home: Path, report: VerifyReport) -> Path:
    """Write <home>/quality/reconciliation.json atomically; returns its path."""
    path = layout.reconciliation_file(home)
    make_folder(path.parent)
    return write_atomic(path, json.dumps(report.to_dict(), ensure_ascii=False, indent=1))


def verify_and_record(home: Path, repair: bool = False, workers: int = 1) -> VerifyReport:
    """verify_network, then write_reconciliation (what the CLI and the sync run)."""
    report = verify_network(home, repair, workers)
    write_reconciliation(home, report)
    return report


def walk_reconciliation(home: Path) -> VerifyReport:
    """The reconciliation the last sync walk of every district made (its record in
    quality/walks/); a district with no readable record is verified now, anew."""
    parts = []
    for code in context.districts():
        part = read_walk_report(layout.walk_file(home, code))
        parts.append(part if part is not None else verify_district(home, code))
    return combine_reports(parts)


def record_walks(home: Path) -> VerifyReport:
    """walk_reconciliation, then write_reconciliation (what the sync and the network DAG run)."""
    report = walk_reconciliation(home)
    write_reconciliation(home, report)
    return report


def reconcile(home: Path) -> dict[str, Any]:
    """The network DAG's reconcile step, after the sync: records the checks its walks made and
    raises ReconciliationError naming the nodes that differ, so the task fails and alerts."""
    report = record_walks(home)
    if report.remaining:
        raise ReconciliationError(
            f"{len(report.remaining)} differences between nodes and their parents after the sync "
            f"(see {layout.reconciliation_file(home)}):\n" + _lines(report.remaining, limit=20)
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
