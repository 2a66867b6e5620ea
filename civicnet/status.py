"""`civicnet status`: the network index plus the city node's ledger and quarantine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from civicnet import pipeline
from schemas.divisions import TIERS
from warehouse.node import node_path
from warehouse.status import batch_ledger, gate_results, quarantine_summary


def collect(home: Path) -> dict[str, Any]:
    """Everything `status --json` prints."""
    index_path = home / "extracts" / "network.json"
    index: dict[str, Any] = {"vintage": pipeline.VINTAGE, "nodes": []}
    if index_path.exists():
        index = json.loads(index_path.read_text("utf-8"))
    nodes = [{k: n[k] for k in ("tier", "code", "extract", "rows")} for n in index["nodes"]]
    out: dict[str, Any] = {"home": str(home), "vintage": index["vintage"], "nodes": nodes,
                           "quarantine": {}, "batches": [], "gate": []}
    if node_path(home, pipeline.city_code()).exists():
        con = pipeline.open_city(home, read_only=True)
        try:
            out["quarantine"] = quarantine_summary(con, "city")
            out["batches"] = batch_ledger(con, "city")
            out["gate"] = gate_results(con, "city")
        finally:
            con.close()
    return out


def rows_by_tier(nodes: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Sum of each dataset's rows over the nodes of each tier (every tier should add up alike)."""
    out: dict[str, dict[str, int]] = {t: {} for t in TIERS}
    for n in nodes:
        for dataset, rows in n["rows"].items():
            out[n["tier"]][dataset] = out[n["tier"]].get(dataset, 0) + rows
    return out


def render(status: dict[str, Any]) -> str:
    """A human summary: rows per tier, batches, quarantine by reason, gate, where extracts are."""
    lines = [f"civicnet home {status['home']} — division vintage {status['vintage']}, "
             f"{len(status['nodes'])} nodes", "", "rows per tier (sum over the tier's nodes):"]
    counts: dict[str, int] = {t: sum(1 for n in status["nodes"] if n["tier"] == t) for t in TIERS}
    for tier, rows in rows_by_tier(status["nodes"]).items():
        detail = ", ".join(f"{d} {n:,}" for d, n in sorted(rows.items()))
        lines.append(f"  {tier:<10} {counts[tier]:>4} nodes  {detail}")
    lines += ["", "batches (received = applied + quarantined + duplicates, + held when a batch is refused):"]
    for b in status["batches"]:
        lines.append(f"  {b['feed']:<28} {b['source_name']:<32} {b['status']:<8} gate {b['gate'] or '-':<5} "
                     f"received {b['received']:>9,} applied {b['applied']:>9,} quarantined {b['quarantined']:>6,} "
                     f"duplicates {b['duplicates']:>7,} moved {b['moved']:>6,}"
                     + (f" held {b['held']:,}" if b["held"] else "")
                     + (f" deleted {b['deleted']:,}" if b["deleted"] else "")
                     + ("" if b["balanced"] else "  UNBALANCED"))
    lines += ["", "quarantine by reason:"]
    for dataset, by_dept in status["quarantine"].items():
        for dept, q in by_dept.items():
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(q["by_reason"].items()))
            lines.append(f"  {dataset} from {dept}: {q['rows']} rows — {reasons}")
    failing = [g for g in status["gate"] if g["failed"]]
    lines += ["", f"quality gate: {len(status['gate'])} batches checked, {len(failing)} with failed expectations"]
    for g in failing:
        lines.append(f"  {g['dataset']} {g['batch_id'][:12]} {g['verdict']}: "
                     + ", ".join(f"{r['expectation']}({r.get('column') or ''})" for r in g["failed"]))
    lines += ["", f"extracts: {Path(status['home']) / 'extracts'}/<tier>/<code>.duckdb (DuckDB 1.4+)"]
    return "\n".join(lines)
