"""What the city node knows about batches and quarantine, for `civicnet status` and a batch's status."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
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


@dataclass(frozen=True)
class LedgerEntry:
    """One decided batch in a node's ledger: what, from whom, when, the decision and its counts.

    `gate` is the gate's verdict; `gate_json` the gate record the quality stage wrote (its reader is
    `quality.verdict.ledger_gate`: the ledger keeps it, it does not interpret it)."""

    batch_id: str
    seq: int | None  # the origin sequence number of an applied batch
    dataset: str
    feed: str
    department: str
    source_name: str
    received_at: dt.datetime  # aware, UTC
    status: Decision
    received: int
    applied: int
    quarantined: int
    duplicates: int
    unchanged: int
    moved: int
    held: int
    deleted: int
    released: int
    gate: str | None
    gate_json: str | None = field(default=None, repr=False)

    @property
    def balanced(self) -> bool:
        """received = applied + quarantined + duplicates + held: every row is accounted for."""
        return self.received == self.applied + self.quarantined + self.duplicates + self.held

    def to_dict(self) -> dict[str, Any]:
        """`civicnet status --json`'s form: the time as ISO 8601 in UTC, with `balanced`."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "gate_json"}
        return out | {"received_at": self.received_at.isoformat(), "balanced": self.balanced}


_COUNTS = ("received", "applied", "quarantined", "duplicates", "unchanged", "moved", "held", "deleted", "released")


def batch_ledger(con: duckdb.DuckDBPyConnection, node: str) -> list[LedgerEntry]:
    """Every decided batch of the attached node `node`, oldest first, with its counts and gate."""
    rows = con.execute(f"""
        SELECT batch_id, seq, dataset, feed, department, source_name, epoch_us(received_at), status,
               {", ".join(f"coalesce({c}, 0)" for c in _COUNTS)}, json_extract_string(gate, '$.verdict'), gate
        FROM {meta_table(node, "batches")} ORDER BY received_at, batch_id""").fetchall()
    return [_entry(row) for row in rows]


def _entry(row: tuple[Any, ...]) -> LedgerEntry:
    b, seq, d, f, dept, src, us, status, n, applied, quarantined, duplicates, unchanged, moved, held, deleted, \
        released, verdict, gate = row
    return LedgerEntry(str(b), None if seq is None else int(seq), str(d), str(f), str(dept),
                       "" if src is None else str(src), dt.datetime.fromtimestamp(us / 1e6, dt.UTC),
                       cast(Decision, status), int(n), int(applied), int(quarantined), int(duplicates),
                       int(unchanged), int(moved), int(held), int(deleted), int(released), verdict, gate)


@dataclass(frozen=True)
class QuarantineTally:
    """One sender department's quarantined rows of one dataset: all ever, still open, released by
    a corrected resubmission, and the open ones per reason code (a row counts once per reason)."""

    rows: int
    open: int
    released: int
    by_reason: Mapping[str, int]

    def to_dict(self) -> dict[str, Any]:
        """`civicnet status --json`'s form."""
        return {"rows": self.rows, "open": self.open, "released": self.released, "by_reason": dict(self.by_reason)}


def quarantine_summary(con: duckdb.DuckDBPyConnection, node: str) -> dict[str, dict[str, QuarantineTally]]:
    """Every dataset's quarantine tally per sending department, in the attached node `node`."""
    reasons = con.execute(f"""
        SELECT dataset, department, r.code, count(*) FROM (
            SELECT dataset, department, unnest(reasons) AS r FROM {meta_table(node, "quarantine")}
            WHERE released_by IS NULL)
        GROUP BY ALL ORDER BY ALL""").fetchall()
    by_reason: dict[tuple[str, str], dict[str, int]] = {}
    for dataset, department, code, n in reasons:
        by_reason.setdefault((dataset, department), {})[code] = n
    totals = con.execute(f"""SELECT dataset, department, count(*), count(*) FILTER (released_by IS NULL)
                             FROM {meta_table(node, "quarantine")} GROUP BY ALL ORDER BY ALL""").fetchall()
    out: dict[str, dict[str, QuarantineTally]] = {}
    for dataset, department, n, still_open in totals:
        out.setdefault(dataset, {})[department] = QuarantineTally(n, still_open, n - still_open,
                                                                  by_reason.get((dataset, department), {}))
    return out


def quarantined_rows(con: duckdb.DuckDBPyConnection, node: str, batch_id: str, limit: int) -> list[dict[str, Any]]:
    """The first `limit` quarantined rows of one batch, by line: its line, reasons and the raw row as sent."""
    rows = con.execute(f"""SELECT line, reasons, raw FROM {meta_table(node, "quarantine")} WHERE batch_id = ?
                           ORDER BY line LIMIT ?""", [batch_id, limit]).fetchall()
    return [{"line": line, "reasons": reasons, "raw": json.loads(raw) if raw else None} for line, reasons, raw in rows]
