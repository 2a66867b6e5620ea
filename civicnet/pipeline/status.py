"""`civicnet status`: the network index, the city node's ledger and quarantine, freshness per
department and community, and the last reconciliation across tiers."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from civicnet import context
from civicnet.pipeline.network import IndexedNode, read_network_index
from civicnet.pipeline.obligations import standings
from connectors.feeds import PushSource, load_feeds
from connectors.push.senders import list_senders
from quality.freshness import BatchSeen, FreshnessRow, Subject, scoreboard
from quality.page import write_quality_page
from quality.verdict import LedgerGate, ledger_gate
from schemas import layout
from schemas.contract import load_contracts
from schemas.divisions import TIERS
from schemas.i18n import DEFAULT_LANG
from schemas.rights import community_department, community_of
from warehouse import landing
from warehouse.check import VerifyReport
from warehouse.status import LedgerEntry, QuarantineTally, batch_ledger, decided_batches, quarantine_summary
from warehouse.stores import store_of


def reconciliation_path(home: Path) -> Path:
    """Where `civicnet verify` leaves its last result."""
    return layout.reconciliation_file(home)


def freshness_subjects(home: Path) -> list[Subject]:
    """Every feed's department, plus each registered community on push feeds communities may send to."""
    contracts = load_contracts()
    communities: dict[str, list[str]] = {}
    for s in list_senders(home):
        if s.kind == "community" and s.division is not None:
            communities.setdefault(s.division, []).append(s.sender_id)
    subjects = []
    for f in sorted(load_feeds().values(), key=lambda f: (f.department, f.dataset, f.slug)):
        cadence = contracts[f.dataset].cadence
        subjects.append(Subject(f.department, f.dataset, f.slug, cadence))
        if isinstance(f.connector, PushSource) and "community" in f.connector.senders:
            subjects += [Subject(community_department(code), f.dataset, f.slug, cadence, code, tuple(ids))
                         for code, ids in sorted(communities.items())]
    return subjects


def batches_seen(home: Path, datasets: set[str]) -> list[BatchSeen]:
    """Every batch received for these datasets: the city ledger's decision, or pending if only landed."""
    seen: dict[str, BatchSeen] = {}
    if store_of(home, context.city_code()).exists():
        con = context.open_city(home, read_only=True)
        try:
            decided = decided_batches(con, "city", datasets)
        finally:
            con.close()
        for b in decided:
            community = community_of(b.department)
            seen[b.batch_id] = BatchSeen(b.batch_id, b.feed, b.received_at, b.status, community)
    for dataset in sorted(datasets):
        for m in landing.landed_batches(home, dataset):
            if m.batch_id not in seen:
                seen[m.batch_id] = BatchSeen(m.batch_id, m.feed, m.received_at, "pending", m.scope)
    return list(seen.values())


def freshness(home: Path, now: dt.datetime | None = None) -> list[FreshnessRow]:
    """The art. 25 scoreboard: per department and dataset (and per community for community
    submissions), when it was last updated and whether it is late."""
    subjects = freshness_subjects(home)
    return scoreboard(subjects, batches_seen(home, {s.dataset for s in subjects}), now)


def reconciliation(home: Path) -> VerifyReport | None:
    """The last reconciliation result `civicnet verify` wrote, or None if it never ran."""
    path = reconciliation_path(home)
    if not path.exists():
        return None
    return VerifyReport.from_dict(json.loads(path.read_text("utf-8")))


@dataclass(frozen=True)
class Status:
    """A network's status in one home: its nodes, the city ledger's batches, gates and quarantine,
    freshness per department and community, and the last reconciliation (`civicnet status`)."""

    home: Path
    vintage: int
    nodes: tuple[IndexedNode, ...]
    batches: tuple[LedgerEntry, ...] = ()
    gate: tuple[LedgerGate, ...] = ()
    quarantine: Mapping[str, Mapping[str, QuarantineTally]] = field(default_factory=dict)
    freshness: tuple[FreshnessRow, ...] = ()
    reconciliation: VerifyReport | None = None
    reporting: tuple[dict[str, Any], ...] = ()  # each periodic report's missing list and rates (obligations)

    def to_dict(self) -> dict[str, Any]:
        """What `civicnet status --json` prints: times as ISO 8601, paths as text."""
        return {"home": str(self.home), "vintage": self.vintage, "nodes": [n.to_dict() for n in self.nodes],
                "quarantine": {d: {dept: q.to_dict() for dept, q in by_dept.items()}
                               for d, by_dept in self.quarantine.items()},
                "batches": [b.to_dict() for b in self.batches], "gate": [g.to_dict() for g in self.gate],
                "freshness": [r.to_dict() for r in self.freshness],
                "reconciliation": None if self.reconciliation is None else self.reconciliation.to_dict(),
                "reporting": list(self.reporting)}


def collect(home: Path, now: dt.datetime | None = None) -> Status:
    """The status of the network in `home` (`now`: the time freshness is judged at; default UTC now)."""
    index = read_network_index(home)
    batches: list[LedgerEntry] = []
    quarantine: dict[str, dict[str, QuarantineTally]] = {}
    if store_of(home, context.city_code()).exists():
        con = context.open_city(home, read_only=True)
        try:
            quarantine = quarantine_summary(con, "city")
            batches = batch_ledger(con, "city")
        finally:
            con.close()
    return Status(home, index.vintage, index.nodes, tuple(batches),
                  tuple(ledger_gate(b.batch_id, b.dataset, b.gate_json) for b in batches), quarantine,
                  tuple(freshness(home, now)), reconciliation(home), tuple(standings(home, now)))


def rows_by_tier(nodes: Iterable[IndexedNode]) -> dict[str, dict[str, int]]:
    """Sum of each dataset's rows over the nodes of each tier (every tier should add up alike)."""
    out: dict[str, dict[str, int]] = {t: {} for t in TIERS}
    for n in nodes:
        for dataset, rows in n.rows.items():
            out[n.tier][dataset] = out[n.tier].get(dataset, 0) + rows
    return out


def render(status: Status) -> str:
    """A human summary: rows per tier, batches, quarantine by reason, gate, where extracts are."""
    lines = [f"civicnet home {status.home} — division vintage {status.vintage}, "
             f"{len(status.nodes)} nodes", "", "rows per tier (sum over the tier's nodes):"]
    counts: dict[str, int] = {t: sum(1 for n in status.nodes if n.tier == t) for t in TIERS}
    for tier, rows in rows_by_tier(status.nodes).items():
        detail = ", ".join(f"{d} {n:,}" for d, n in sorted(rows.items()))
        lines.append(f"  {tier:<10} {counts[tier]:>4} nodes  {detail}")
    lines += ["", "batches (received = applied + quarantined + duplicates, + held when a batch is refused):"]
    for b in status.batches:
        lines.append(f"  {b.feed:<28} {b.source_name:<32} {b.status:<8} gate {b.gate or '-':<5} "
                     f"received {b.received:>9,} applied {b.applied:>9,} quarantined {b.quarantined:>6,} "
                     f"duplicates {b.duplicates:>7,} moved {b.moved:>6,}"
                     + (f" held {b.held:,}" if b.held else "")
                     + (f" deleted {b.deleted:,}" if b.deleted else "")
                     + ("" if b.balanced else "  UNBALANCED"))
    lines += ["", "quarantine by reason:"]
    for dataset, by_dept in status.quarantine.items():
        for dept, q in by_dept.items():
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(q.by_reason.items()))
            lines.append(f"  {dataset} from {dept}: {q.rows:,} rows (open {q.open:,}, released {q.released:,})"
                         f" — {reasons}")
    failing = [g for g in status.gate if g.failed]
    lines += ["", f"quality gate: {len(status.gate)} batches checked, {len(failing)} with failed expectations"]
    for g in failing:
        lines.append(f"  {g.dataset} {g.batch_id[:12]} {g.verdict}: "
                     + ", ".join(f"{r.expectation}({r.column or ''})" for r in g.failed))
    lines += ["", *render_freshness(status.freshness), "", render_reconciliation(status.reconciliation)]
    lines += ["", f"extracts: {status.home / 'extracts'}/<tier>/<code>.duckdb (DuckDB 1.4+)"]
    return "\n".join(lines)


def render_freshness(rows: Sequence[FreshnessRow]) -> list[str]:
    """The scoreboard as text lines, late subjects first."""
    late = [r for r in rows if r.late]
    lines = [f"freshness (art. 25): {len(rows)} department/community feeds, {len(late)} late"]
    for r in sorted(rows, key=lambda r: (not r.late, r.department, r.dataset, r.community or "")):
        lines.append(f"  {'LATE   ' if r.late else 'on time'} {r.sentence}")
    return lines


def render_reconciliation(result: VerifyReport | None) -> str:
    """One line: when reconciliation last ran and what it found."""
    if result is None:
        return "reconciliation: never run (`civicnet verify` checks every node against its parent)"
    line = (f"reconciliation: checked {result.checked_at.isoformat()}, {result.nodes_checked:,} nodes, "
            f"{len(result.mismatches)} mismatches, {len(result.repaired)} slices repaired, "
            f"{len(result.remaining)} remaining")
    if result.remaining:
        nodes = sorted({m.node for m in result.remaining})
        line += " — differing nodes: " + ", ".join(nodes[:5]) + (" ..." if len(nodes) > 5 else "")
    if result.skipped:
        line += f" — {len(result.skipped)} nodes not checked: " + ", ".join(
            f"{s.code} ({s.cause})" for s in result.skipped[:5]) + (" ..." if len(result.skipped) > 5 else "")
    return line


def quality_page(home: Path, run_id: str | None = None, now: dt.datetime | None = None,
                 lang: str = DEFAULT_LANG) -> Path:
    """Collect the status and write this run's quality page (<home>/reports/quality/<run_id>.html,
    copied to index.html); `now` is when freshness is judged (default: now); zh-CN unless `lang` says."""
    return write_quality_page(home, collect(home, now), run_id, lang)
