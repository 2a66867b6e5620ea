"""Apply a checked batch to the origin node: SCD2 history, tombstones for moves, ledger, quarantine.

Everything a batch changes, including its ledger row and the node's high-water mark, commits
in one transaction; a batch already in the ledger is skipped. So a merge killed at any point
and run again leaves the node exactly as one clean run would.

A batch confined to one division (a community's push, `BatchInput.scope`) writes only inside it
(invariant 5), judged against the node's current rows in the same transaction: a row whose key
is a current record anchored elsewhere is quarantined as `key_owned_elsewhere`, not applied
(no change, move or tombstone of another division's record), and the batch releases only
quarantine entries of its own sender department (a community's is `community:<code>`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.contract import DELETED_COLUMN as DELETED
from schemas.contract import LINE_COLUMN as LINE
from schemas.contract import RAW_COLUMN as RAW
from schemas.contract import Contract
from schemas.derive import display_key_sql, key_sql
from schemas.divisions import subtree_prefix
from schemas.errors import TerminalError
from schemas.sql import qualified, quote_ident, quote_literal
from warehouse.node import meta_table, set_high_water_mark, transaction
from warehouse.pgnode import Effect, literal

if TYPE_CHECKING:
    from warehouse.stores import Replica

STAGE_ALIAS = "s"
Rows: TypeAlias = pa.Table | Path  # a batch's rows: in memory, or a Parquet file DuckDB reads where it is


class QuarantineCloseError(TerminalError):
    """Quarantined rows cannot be closed as asked."""


class UnsupportedHistoryModeError(TerminalError):
    """The contract asks for a history mode the merge does not implement."""


class ScopedBatchLinesError(TerminalError):
    """A batch confined to one division reached the merge without its rows' line numbers."""


Decision = Literal["applied", "refused"]  # what the ledger records of a batch


@dataclass(frozen=True)
class BatchOutcome:
    """The ledger row of one batch: received = applied + quarantined + duplicates.

    `duplicates` counts repeats within the batch and rows identical to the version already
    held; `unchanged` is the second part alone. A refused batch applies nothing: its clean rows
    are `held` in landing, so received = applied + quarantined + duplicates + held."""

    batch_id: str
    dataset: str
    seq: int | None
    status: Decision
    received: int
    applied: int
    unchanged: int
    quarantined: int
    duplicates: int
    moved: int
    held: int = 0
    deleted: int = 0
    released: int = 0  # quarantined rows of earlier batches this batch's corrected rows released

    def to_dict(self) -> dict[str, Any]:
        """The outcome as plain values (what a DAG task hands the next one through XCom)."""
        return asdict(self)


@dataclass(frozen=True)
class BatchInput:
    """What the merge needs to know about a batch besides its rows."""

    batch_id: str
    feed: str
    department: str
    source_name: str
    received_at: dt.datetime  # aware, UTC
    received: int
    duplicates: int
    gate: Mapping[str, Any]
    # the division a community's pushed batch is confined to, and how its foreign keys are refused
    scope: Scope | None = None


@dataclass(frozen=True)
class Scope:
    """The one division a batch may write in, and the words of the reason `key_owned_elsewhere`.

    `message` is a DuckDB format() template (quality.reasons words it): {0} the key as sent, {1}
    the code of the division whose current record the key is, {2} that division's name, looked
    up in `names` (code → name)."""

    division: str
    message: str
    field: str  # the field the reason names: the key's first field
    names: Mapping[str, str]


def ledger_entry(con: duckdb.DuckDBPyConnection, node: str, batch_id: str) -> BatchOutcome | None:
    """The ledger row of a batch, if the node has decided it."""
    row = con.execute(f"""SELECT batch_id, dataset, seq, status, received, applied, unchanged, quarantined,
                                 duplicates, moved, held, deleted, released FROM {meta_table(node, "batches")}
                          WHERE batch_id = ?""",
                      [batch_id]).fetchone()
    return BatchOutcome(*row) if row else None


def _next_seq(con: duckdb.DuckDBPyConnection, node: str) -> int:
    row = con.execute(f"SELECT coalesce(max(seq), 0) + 1 FROM {meta_table(node, 'batches')}").fetchone()
    assert row is not None
    return int(row[0])


def _stage_delta(con: duckdb.DuckDBPyConnection, node: str, contract: Contract) -> None:
    """`delta`: the batch's rows that are new or differ from the current version."""
    fields = ", ".join(quote_ident(f) for f in contract.field_names)
    on = " AND ".join(f"c.{quote_ident(k)} = {STAGE_ALIAS}.{quote_ident(k)}" for k in contract.primary_key)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE delta AS
        SELECT {STAGE_ALIAS}.*, c.{quote_ident(contract.anchor)} AS _old_anchor,
               {key_sql(contract, STAGE_ALIAS)} AS _key
        FROM (SELECT {fields}, md5(to_json(struct_pack({fields}))) AS _row_hash FROM accepted
              WHERE NOT {DELETED}) {STAGE_ALIAS}
        LEFT JOIN {qualified(node, contract.name)} c ON {on}
        WHERE c._row_hash IS DISTINCT FROM {STAGE_ALIAS}._row_hash""")


def _stage_claims(con: duckdb.DuckDBPyConnection, node: str, contract: Contract, scope: Scope | None,
                  columns: list[str]) -> int:
    """`claimed`: rows of a confined batch (upserts and tombstones alike) whose key is a current record
    anchored outside its scope; `accepted`: the batch's other rows, the ones the merge goes on with.
    Returns how many rows are claimed (none for a batch not confined)."""
    if scope is None:
        con.execute("CREATE OR REPLACE TEMP VIEW accepted AS SELECT * FROM incoming")
        return 0
    if LINE not in columns:
        raise ScopedBatchLinesError(
            f"the checked rows of a batch confined to division {scope.division} have no {LINE} column (it was "
            "checked by an older civicnet); run its check again, then the merge")
    on = " AND ".join(f"c.{quote_ident(k)} = b.{quote_ident(k)}" for k in contract.primary_key)
    raw = f"b.{RAW}" if RAW in columns else "NULL"
    anchor = f"c.{quote_ident(contract.anchor)}"
    con.execute(f"""CREATE OR REPLACE TEMP TABLE claimed AS
        SELECT b.{LINE} AS _line, {key_sql(contract, 'b')} AS _key, {anchor} AS _owner,
               CAST({raw} AS JSON) AS _raw
        FROM incoming b JOIN {qualified(node, contract.name)} c ON {on}
        WHERE NOT starts_with({anchor}, ?)""", [subtree_prefix(scope.division)])
    con.execute(f"CREATE OR REPLACE TEMP VIEW accepted AS SELECT * FROM incoming ANTI JOIN claimed USING ({LINE})")
    (count,), = con.execute("SELECT count(*) FROM claimed").fetchall()
    return int(count)


def _quarantine_claims(con: duckdb.DuckDBPyConnection, node: str, contract: Contract, batch: BatchInput) -> None:
    """Quarantine the claimed rows as `key_owned_elsewhere`: the sentence names the key as sent and the
    division that holds it, nothing of the record itself."""
    assert batch.scope is not None
    names = pa.table({"code": list(batch.scope.names), "name": list(batch.scope.names.values())},
                     pa.schema([("code", pa.string()), ("name", pa.string())]))
    con.register("division_names", names)
    try:
        con.execute(f"""INSERT INTO {meta_table(node, "quarantine")}
            SELECT ?, ?, ?, ?, c._line,
                   [struct_pack(code := 'key_owned_elsewhere', field := ?,
                                message := format(?, {display_key_sql('c._key')}, c._owner,
                                                  coalesce(n.name, '')))],
                   c._raw, c._key, NULL, NULL
            FROM claimed c LEFT JOIN division_names n ON n.code = c._owner ORDER BY c._line""",
                    [batch.batch_id, contract.name, batch.feed, batch.department, batch.scope.field,
                     batch.scope.message])
    finally:
        con.unregister("division_names")


def _stage_deletes(con: duckdb.DuckDBPyConnection, node: str, contract: Contract) -> int:
    """`gone`: current rows the batch deletes (tombstone rows whose key the node holds); returns their count.
    A key the node does not hold (never sent, or deleted before) is a no-op, counted as unchanged.
    (A confined batch's tombstones of another division's rows were claimed before: they are not here.)"""
    pk = ", ".join(quote_ident(k) for k in contract.primary_key)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE gone AS
        SELECT {key_sql(contract, 'c')} AS _key, c.{quote_ident(contract.anchor)} AS _old_anchor
        FROM {qualified(node, contract.name)} c
        SEMI JOIN (SELECT {pk} FROM accepted WHERE {DELETED}) USING ({pk})""")
    (count,), = con.execute("SELECT count(*) FROM gone").fetchall()
    return int(count)


def _write_deletes(con: duckdb.DuckDBPyConnection, node: str, contract: Contract, batch: BatchInput,
                   seq: int) -> None:
    """Close the deleted rows' versions, tombstone them at their last anchor, remove the current rows."""
    name = contract.name
    table, history = qualified(node, name), qualified(node, f"{name}_history")
    con.execute(f"""UPDATE {history} h SET _valid_to = ?::TIMESTAMPTZ
        FROM gone g WHERE {key_sql(contract, 'h')} = g._key AND h._valid_to IS NULL""", [batch.received_at])
    con.execute(f"""INSERT INTO {meta_table(node, "tombstones")} SELECT ?, _key, _old_anchor, ?, ?, ? FROM gone""",
                [name, seq, batch.batch_id, batch.feed])
    con.execute(f"""DELETE FROM {table} c USING gone g WHERE {key_sql(contract, 'c')} = g._key""")


def _write_versions(con: duckdb.DuckDBPyConnection, node: str, contract: Contract,
                    batch: BatchInput, seq: int) -> int:
    """Close old versions, add new ones, tombstone moved rows, replace current rows; returns moves."""
    name, fields = contract.name, ", ".join(quote_ident(f) for f in contract.field_names)
    ts, bid, anchor = batch.received_at, batch.batch_id, quote_ident(contract.anchor)
    table, history = qualified(node, name), qualified(node, f"{name}_history")
    con.execute(f"""UPDATE {history} h SET _valid_to = ?::TIMESTAMPTZ
        FROM delta d WHERE {key_sql(contract, 'h')} = d._key AND h._valid_to IS NULL
        AND d._old_anchor IS NOT NULL""", [ts])
    con.execute(f"""INSERT INTO {history}
        SELECT {fields}, ?::TIMESTAMPTZ, NULL, ?, ? FROM delta""", [ts, bid, seq])
    con.execute(f"""INSERT INTO {meta_table(node, "tombstones")}
        SELECT ?, _key, _old_anchor, ?, ?, ? FROM delta
        WHERE _old_anchor IS NOT NULL AND _old_anchor <> {anchor}""", [name, seq, bid, batch.feed])
    moved = con.execute(f"SELECT count(*) FROM delta WHERE _old_anchor <> {anchor}").fetchone()
    con.execute(f"""DELETE FROM {table} c USING delta d
        WHERE {key_sql(contract, 'c')} = d._key AND d._old_anchor IS NOT NULL""")
    con.execute(f"""INSERT INTO {table}
        SELECT {fields}, ?, _row_hash, ?::TIMESTAMPTZ, ? FROM delta""", [seq, ts, bid])
    return int(moved[0]) if moved else 0


def _write_quarantine(con: duckdb.DuckDBPyConnection, node: str, contract: Contract, batch: BatchInput) -> None:
    con.execute(f"""INSERT INTO {meta_table(node, "quarantine")}
        SELECT ?, ?, ?, ?, _line, reasons, raw, key, NULL, NULL FROM quarantined""",
                [batch.batch_id, contract.name, batch.feed, batch.department])


def _release_quarantine(con: duckdb.DuckDBPyConnection, node: str, contract: Contract, batch: BatchInput) -> int:
    """A corrected resubmission: quarantined rows of earlier batches whose key this batch now
    applies (or deletes) are released, marked with this batch; returns how many. A confined batch
    releases only entries its own department's batches produced (a community's: its own)."""
    own = "" if batch.scope is None else "AND q.department = ?"
    return int(con.execute(f"""
        UPDATE {meta_table(node, "quarantine")} q SET released_by = ?, released_at = ?::TIMESTAMPTZ
        WHERE q.dataset = ? AND q.released_by IS NULL AND q.batch_id <> ? {own}
          AND q.key IN (SELECT {key_sql(contract, 'a')} FROM accepted a)""",
                           [batch.batch_id, batch.received_at, contract.name, batch.batch_id,
                            *([] if batch.scope is None else [batch.department])]).fetchall()[0][0])


def close_quarantined(con: duckdb.DuckDBPyConnection, node: str, batch_id: str, lines: list[int], why: str,
                      replica: Replica | None = None) -> int:
    """Close open quarantined rows of a batch by hand (a row whose key was itself wrong can never be
    released by a resubmission): they are marked released by `manual: <why>`; returns how many."""
    if not why.strip():
        raise QuarantineCloseError("say why the rows are closed (--why): it is kept with each row")
    wanted = sorted(set(lines))
    with transaction(con):  # all or nothing: a wrong line number closes none
        (closed,), = con.execute(f"""
            UPDATE {meta_table(node, "quarantine")} SET released_by = ?, released_at = now()
            WHERE batch_id = ? AND line IN (SELECT unnest(?::BIGINT[])) AND released_by IS NULL""",
                                 [f"manual: {why.strip()}", batch_id, wanted]).fetchall()
        if closed != len(wanted):
            raise QuarantineCloseError(
                f"{len(wanted) - int(closed)} of lines {wanted} of batch {batch_id} are not open in quarantine "
                "(released already, or no such line), so none was closed: check the batch's rejection report")
        _push(con, node, replica, [Effect("_civicnet.quarantine", f"batch_id = {literal(batch_id)}")])
    return int(closed)


def _push(con: duckdb.DuckDBPyConnection, node: str, replica: Replica | None, effects: list[Effect]) -> None:
    """Write what the transaction changed to the node's store of record, if it has one elsewhere."""
    if replica is not None:
        replica.push(con, node, effects)


def _ledger_effects(node: str, batch: BatchInput) -> list[Effect]:
    """A decided batch's ledger row and its quarantine rows (and those it released)."""
    bid = literal(batch.batch_id)
    entry = "concat_ws(chr(31), batch_id, dataset, CAST(line AS VARCHAR))"  # a quarantine row, as text
    ids = f"""SELECT {entry} AS _id FROM {meta_table(node, "quarantine")}
              WHERE batch_id = {bid} OR released_by = {bid}"""
    return [Effect("_civicnet.batches", f"batch_id = {bid}"),
            Effect("_civicnet.quarantine", f"{entry} IN {{ids}}", ids)]


def _write_ledger(con: duckdb.DuckDBPyConnection, node: str, contract: Contract, batch: BatchInput,
                  outcome: BatchOutcome) -> None:
    """The batch's ledger row; it owes its rejection report (`report_owed`) from this commit on."""
    con.execute(f"""INSERT INTO {meta_table(node, "batches")} VALUES
        (?, ?, ?, ?, ?, ?, ?::TIMESTAMPTZ, now(), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, true)""",
                [batch.batch_id, outcome.seq, contract.name, batch.feed, batch.department,
                 batch.source_name, batch.received_at, outcome.status, outcome.received, outcome.applied,
                 outcome.unchanged, outcome.quarantined, outcome.duplicates, outcome.moved, outcome.held,
                 json.dumps(batch.gate, ensure_ascii=False), outcome.deleted, outcome.released])


def owed_reports(con: duckdb.DuckDBPyConnection, node: str, feed: str | None = None) -> list[str]:
    """Decided batches (of one feed, or all) whose rejection report step has not run to its end, in
    the order they were decided: a run killed between a merge's commit and the outbox write left them."""
    where = "" if feed is None else "AND feed = ?"
    rows = con.execute(f"""SELECT batch_id FROM {meta_table(node, "batches")} WHERE report_owed {where}
                           ORDER BY decided_at, batch_id""", [] if feed is None else [feed]).fetchall()
    return [str(r[0]) for r in rows]


def settle_report(con: duckdb.DuckDBPyConnection, node: str, batch_id: str, replica: Replica | None = None) -> None:
    """Record that a batch's rejection report is written (or that it needs none)."""
    if replica is None:
        con.execute(f"UPDATE {meta_table(node, 'batches')} SET report_owed = false WHERE batch_id = ?", [batch_id])
        return
    with transaction(con):
        con.execute(f"UPDATE {meta_table(node, 'batches')} SET report_owed = false WHERE batch_id = ?", [batch_id])
        _push(con, node, replica, [Effect("_civicnet.batches", f"batch_id = {literal(batch_id)}")])


def apply_batch(con: duckdb.DuckDBPyConnection, node: str, contract: Contract, accepted: Rows,
                quarantined: Rows, batch: BatchInput, replica: Replica | None = None) -> BatchOutcome:
    """Merge one batch into the origin node in one transaction; a batch seen before is skipped.

    The rows are Arrow tables or the paths of their Parquet files: then DuckDB reads them where they
    are (read_parquet), so a batch of any size merges without its rows in Python memory."""
    if contract.history != "scd2":
        raise UnsupportedHistoryModeError(
            f"{contract.source}: history mode {contract.history!r} has no merge yet; use 'scd2'")
    seen = ledger_entry(con, node, batch.batch_id)
    if seen is not None:
        return seen
    columns, received_rows, quarantined_rows = _columns(accepted), _num_rows(accepted), _num_rows(quarantined)
    if isinstance(accepted, pa.Table) and DELETED not in columns:  # no soft-delete column: every row an upsert
        accepted = accepted.append_column(DELETED, pa.array([False] * accepted.num_rows, pa.bool_()))
    with _rows(con, incoming=accepted, quarantined=quarantined) as tables, transaction(con, **tables):
        seq = _next_seq(con, node)
        claimed = _stage_claims(con, node, contract, batch.scope, columns)
        _stage_delta(con, node, contract)
        row = con.execute("SELECT count(*) FROM delta").fetchone()
        applied = int(row[0]) if row else 0
        deleted = _stage_deletes(con, node, contract)
        moved = _write_versions(con, node, contract, batch, seq)
        _write_deletes(con, node, contract, batch, seq)
        released = _release_quarantine(con, node, contract, batch)
        _write_quarantine(con, node, contract, batch)
        if claimed:
            _quarantine_claims(con, node, contract, batch)
        applied += deleted
        unchanged = received_rows - claimed - applied
        outcome = BatchOutcome(batch.batch_id, contract.name, seq, "applied", batch.received, applied,
                               unchanged, quarantined_rows + claimed, batch.duplicates + unchanged, moved,
                               deleted=deleted, released=released)
        _write_ledger(con, node, contract, batch, outcome)
        set_high_water_mark(con, node, contract.name, seq)
        _push(con, node, replica, _merge_effects(node, contract, batch, seq))
    con.execute("DROP VIEW IF EXISTS accepted")  # it reads `incoming`, there only for the transaction
    return outcome


def _merge_effects(node: str, contract: Contract, batch: BatchInput, seq: int) -> list[Effect]:
    """What a merge changed: the current rows and every version of the keys it changed or deleted,
    its tombstones, its mark, its ledger and quarantine rows."""
    name, key = literal(contract.name), f"{key_sql(contract, 't')} IN {{ids}}"
    changed = "SELECT _key AS _id FROM delta UNION ALL SELECT _key FROM gone"
    return [Effect(contract.name, key, changed), Effect(f"{contract.name}_history", key, changed),
            Effect("_civicnet.tombstones", f"dataset = {name} AND _seq = {seq}"),
            Effect("_civicnet.hwm", f"dataset = {name} AND seq = {seq}"),
            *_ledger_effects(node, batch)]


def _columns(rows: Rows) -> list[str]:
    names: list[str] = rows.column_names if isinstance(rows, pa.Table) else pq.read_schema(rows).names
    return names


def _num_rows(rows: Rows) -> int:
    return rows.num_rows if isinstance(rows, pa.Table) else int(pq.ParquetFile(rows).metadata.num_rows)


@contextmanager
def _rows(con: duckdb.DuckDBPyConnection, **rows: Rows) -> Iterator[dict[str, pa.Table]]:
    """Views over the rows given as Parquet files (with `_deleted` false when `incoming` has none), for
    as long as the block runs; the Arrow tables are handed back to be registered by `transaction`."""
    views = {name: r for name, r in rows.items() if isinstance(r, Path)}
    for name, path in views.items():
        deleted = f", false AS {DELETED}" if name == "incoming" and DELETED not in _columns(path) else ""
        con.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(name)} AS "
                    f"SELECT *{deleted} FROM read_parquet({quote_literal(str(path))})")
    try:
        yield {name: r for name, r in rows.items() if isinstance(r, pa.Table)}
    finally:
        for name in views:
            con.execute(f"DROP VIEW IF EXISTS {quote_ident(name)}")


def refuse_batch(con: duckdb.DuckDBPyConnection, node: str, contract: Contract, batch: BatchInput,
                 quarantined: Rows, held: int, replica: Replica | None = None) -> BatchOutcome:
    """Record that the quality gate refused a batch: its bad rows go to quarantine with their
    reasons, its `held` clean rows are not applied and stay in landing; no data changes."""
    seen = ledger_entry(con, node, batch.batch_id)
    if seen is not None:
        return seen
    outcome = BatchOutcome(batch.batch_id, contract.name, None, "refused", batch.received, 0,
                           0, _num_rows(quarantined), batch.duplicates, 0, held)
    with _rows(con, quarantined=quarantined) as tables, transaction(con, **tables):
        _write_quarantine(con, node, contract, batch)
        _write_ledger(con, node, contract, batch, outcome)
        _push(con, node, replica, _ledger_effects(node, batch))
    return outcome
