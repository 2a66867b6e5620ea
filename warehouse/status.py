"""What the city node knows about batches and quarantine, for `civicnet status` and a batch's status."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import duckdb

from warehouse.merge import Decision
from warehouse.node import meta_table


@dataclass(frozen=True)
class DecidedBatch:
    """One batch a node's ledger has decided: what, from whom, when it was received, and the decision."""

    batch_id: str
    dataset: str
    feed: str
    department: str
    received_at: dt.datetime  # aware, UTC
    status: Decision


def decided_batches(con: duckdb.DuckDBPyConnection, node: str, datasets: Iterable[str]) -> list[DecidedBatch]:
    """Every batch of these datasets in the ledger of the attached node `node`, in no particular order."""
    rows = con.execute(f"""SELECT batch_id, dataset, feed, department, epoch_us(received_at), status
                           FROM {meta_table(node, "batches")} WHERE list_contains(?::VARCHAR[], dataset)""",
                       [sorted(set(datasets))]).fetchall()
    return [DecidedBatch(str(b), str(d), str(f), str(dept), dt.datetime.fromtimestamp(us / 1e6, dt.UTC),
                         cast(Decision, status)) for b, d, f, dept, us, status in rows]


def batch_ledger(con: duckdb.DuckDBPyConnection, node: str) -> list[dict[str, Any]]:
    """Every decided batch, oldest first, with its counts and gate verdict."""
    cur = con.execute(f"""
        SELECT batch_id, seq, dataset, feed, department, source_name, CAST(received_at AS VARCHAR) AS received_at,
               status, received, applied, quarantined, duplicates, unchanged, moved, held, deleted, released,
               json_extract_string(gate, '$.verdict') AS gate
        FROM {meta_table(node, "batches")} ORDER BY received_at, batch_id""")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    for r in rows:
        r["balanced"] = r["received"] == r["applied"] + r["quarantined"] + r["duplicates"] + r["held"]
    return rows


def quarantine_summary(con: duckdb.DuckDBPyConnection, node: str) -> dict[str, Any]:
    """Quarantined rows per dataset and sending department: all ever, still open, released by a
    corrected resubmission, and the open ones per reason code (a row counts once per reason)."""
    rows = con.execute(f"""
        SELECT dataset, department, r.code, count(*) FROM (
            SELECT dataset, department, unnest(reasons) AS r FROM {meta_table(node, "quarantine")}
            WHERE released_by IS NULL)
        GROUP BY ALL ORDER BY ALL""").fetchall()
    totals = con.execute(f"""SELECT dataset, department, count(*), count(*) FILTER (released_by IS NULL)
                             FROM {meta_table(node, "quarantine")} GROUP BY ALL ORDER BY ALL""").fetchall()
    out: dict[str, Any] = {}
    for dataset, department, n, still_open in totals:
        out.setdefault(dataset, {})[department] = {"rows": n, "open": still_open, "released": n - still_open,
                                                   "by_reason": {}}
    for dataset, department, code, n in rows:
        out[dataset][department]["by_reason"][code] = n
    return out


def gate_results(con: duckdb.DuckDBPyConnection, node: str) -> list[dict[str, Any]]:
    """The failed or warning expectations of every batch (passes are summarised by the verdict)."""
    out = []
    for batch_id, dataset, gate in con.execute(
            f"SELECT batch_id, dataset, gate FROM {meta_table(node, 'batches')} ORDER BY received_at").fetchall():
        parsed = json.loads(gate) if gate else {}
        failed = [r for r in parsed.get("results", []) if not r.get("success")]
        out.append({"batch_id": batch_id, "dataset": dataset, "verdict": parsed.get("verdict"),
                    "expectations": len(parsed.get("results", [])), "failed": failed,
                    "error": parsed.get("error")})
    return out


def quarantined_rows(con: duckdb.DuckDBPyConnection, node: str, batch_id: str, limit: int) -> list[dict[str, Any]]:
    """The first `limit` quarantined rows of one batch, by line: its line, reasons and the raw row as sent."""
    rows = con.execute(f"""SELECT line, reasons, raw FROM {meta_table(node, "quarantine")} WHERE batch_id = ?
                           ORDER BY line LIMIT ?""", [batch_id, limit]).fetchall()
    return [{"line": line, "reasons": reasons, "raw": json.loads(raw) if raw else None} for line, reasons, raw in rows]
