"""Node stores: one DuckDB file per division, the same structure at every tier.

A node holds, for every dataset that reaches its tier, the current rows whose anchor lies in
its subtree (`<dataset>`), the tombstones that removed rows from it, its high-water marks and
its sync log. The city node, where batches enter, also keeps SCD2 history, the batch ledger
and quarantine. Files are written in DuckDB's v1.4 storage format so that analysts on DuckDB
1.4 or newer can open the published copies.
"""

from __future__ import annotations

import errno
import hashlib
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from schemas.contract import Contract
from schemas.derive import column_definitions
from schemas.divisions import Tier, tier_of
from schemas.errors import CivicnetError, TerminalError, TransientError
from schemas.homefiles import atomic_target, make_folder, secure
from schemas.sql import qualified, quote_ident, quote_literal

# DuckDB 2.x writes files that 1.x cannot read unless told to use an older storage version.
STORAGE_VERSION = "v1.4.0"
META_SCHEMA = "_civicnet"  # a node's bookkeeping tables: marks, tombstones, sync log, ledger, quarantine
META_COLUMNS: list[tuple[str, str]] = [
    ("_seq", "BIGINT"), ("_row_hash", "VARCHAR"), ("_valid_from", "TIMESTAMPTZ"), ("_batch_id", "VARCHAR"),
]


# A community node holds a few thousand rows in a dozen small tables: with DuckDB's default
# 256 KiB blocks each table costs whole blocks, so small tiers use small blocks (DuckDB 1.4
# reads them). Large blocks stay where tables are large.
BLOCK_SIZES: dict[Tier, int] = {"city": 262144, "district": 262144, "street": 65536, "community": 16384}
# Per connection: DuckDB's default (80 % of RAM) would let one task crowd out the rest.
MEMORY_LIMIT = "1GB"


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection to attach nodes to, with a bounded buffer pool."""
    con = duckdb.connect(config={"memory_limit": MEMORY_LIMIT})
    con.execute("SET enable_progress_bar = false")  # a local option: not accepted in the config
    return con


# Bump when the bookkeeping tables change shape (nodes of another layout are refused).
# 6: the ledger says which decided batches still owe their rejection report (`report_owed`).
LAYOUT_VERSION = 6


class NodeLayoutError(TerminalError):
    """A node file was written with another table layout."""


class NodeLockedError(TransientError):
    """Another process holds the node file; retry when it is done."""


class NodeCorruptError(TerminalError):
    """A node file cannot be read as a DuckDB database (truncated, overwritten, bad checksum):
    rebuild it from its parent."""


class DiskFullError(TerminalError):
    """The disk a node (or another civicnet file) is written to has no space left."""


# What DuckDB says (its messages are the only thing that tells these cases apart: they all come
# as IOException or the bare duckdb.Error), matched case-insensitively.
_LOCKED = ("could not set lock on file", "conflicting lock is held")
_CORRUPT = ("not a valid duckdb database file", "could not read enough bytes", "corrupt database file",
            "does not match stored checksum", "checksum mismatch", "database file is truncated",
            "failed to deserialize", "unsupported database storage version")
_FULL = ("no space left on device", "disk quota exceeded")
_HOLDER = re.compile(r"conflicting lock is held in (.+?) \(PID (\d+)\)", re.IGNORECASE)
_FILE_IN_MESSAGE = re.compile(r'file "([^"]+)"')


def node_code(path: Path) -> str:
    """The division code a node (or extract) file is named after."""
    return path.name.split(".", 1)[0]


def rebuild_hint(code: str) -> str:
    """How to rebuild one node, for messages (the city, which has no parent, from its last extract)."""
    if code.isdigit() and len(code) == 12 and tier_of(code) == "city":
        return (f"the city node has no parent to rebuild it from: move the file aside, copy its last published "
                f"extract (extracts/city/{code}.duckdb) in its place, and run the ingest DAGs again (batches "
                "decided after that extract are applied again from landing)")
    return (f"rebuild it from its parent with `civicnet rebuild-node {code}` (the damaged file is moved aside, "
            "never deleted, and the node is synced again from its nearest healthy ancestor)")


def classify_error(err: BaseException, path: Path | None = None) -> CivicnetError | None:
    """DuckDB's or the OS's error about a node file as civicnet's own: a locked node (transient),
    a corrupt node or a full disk (terminal); None when it is none of these.

    `path` is the file the caller was working on; the file DuckDB names, if it names one, wins (a
    parent's damage found while syncing its child is the parent's)."""
    if isinstance(err, CivicnetError):
        return err
    text = str(err)
    lowered = text.lower()
    named = _FILE_IN_MESSAGE.search(text)
    if named:
        path = Path(named.group(1))
    if (isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)) or any(s in lowered for s in _FULL):
        return DiskFullError(disk_full_message(path))
    if not isinstance(err, duckdb.Error) or path is None or ".duckdb" not in path.name:
        return None  # not about a node file (a damaged Parquet file is its reader's to report)
    code = node_code(path)
    if any(s in lowered for s in _LOCKED):
        holder = _HOLDER.search(text)
        who = f"{holder.group(1)} (PID {holder.group(2)})" if holder else "another process"
        return NodeLockedError(
            f"node {code} ({path}) is open in {who}, which holds DuckDB's lock on it: close that session "
            f"(an analyst should open the published extract under extracts/, never the node file), then retry")
    if any(s in lowered for s in _CORRUPT):
        reason = text.split(":", 1)[-1].strip().replace(str(path), path.name)
        return NodeCorruptError(f"node {code} ({path}) is damaged and cannot be read ({reason}); {rebuild_hint(code)}")
    return None


def disk_full_message(path: Path | None) -> str:
    """What, where and how to fix, for a write that found no space left."""
    where = path if path is not None else Path.cwd()
    folder = next((p for p in [where, *where.parents] if p.exists()), Path("/"))
    usage = shutil.disk_usage(folder)
    return (f"the disk of {where} is full: {usage.free / 2**20:,.1f} MiB free of {usage.total / 2**30:,.1f} GiB "
            f"(df {folder}); the write was not made and the file there is as it was. Free space on that disk "
            "(old releases, the staging folders of decided batches) or move the civicnet home to a larger one, "
            "then run the same command again")


@contextmanager
def node_errors(path: Path | None = None) -> Iterator[None]:
    """Raise DuckDB's and the OS's errors about `path` as civicnet's (see `classify_error`)."""
    try:
        yield
    except (duckdb.Error, OSError) as err:
        classified = classify_error(err, path)
        if classified is None:
            raise
        raise classified from err


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection, **tables: pa.Table) -> Iterator[None]:
    """One transaction, rolled back on any error (a kill included: DuckDB never commits a half),
    with Arrow `tables` registered under their names for its duration.

    The error that stopped the transaction is the one raised (classified by `classify_error`):
    when DuckDB has already rolled back a failed COMMIT (a full disk), the ROLLBACK that then finds
    no transaction only adds a note."""
    for name, table in tables.items():
        con.register(name, table)
    try:
        with node_errors():
            con.execute("BEGIN TRANSACTION")
            try:
                yield
                con.execute("COMMIT")
            except BaseException as err:
                _rollback(con, err)
                raise
    finally:
        for name in tables:
            con.unregister(name)


def _rollback(con: duckdb.DuckDBPyConnection, cause: BaseException) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error as failed:  # e.g. "cannot rollback - no transaction is active"
        cause.add_note(f"(the rollback after it failed too: {failed})")


def meta_table(alias: str, table: str) -> str:
    """A bookkeeping table of the node attached as `alias`, quoted: "alias"."_civicnet"."table"."""
    return qualified(alias, META_SCHEMA, table)


def attach(con: duckdb.DuckDBPyConnection, path: Path, alias: str, read_only: bool = False,
           block_size: int | None = None) -> None:
    """Attach a node file under an alias (created in v1.4 format, with `block_size` if new)."""
    make_folder(path.parent)
    options = "READ_ONLY" if read_only else f"STORAGE_VERSION {quote_literal(STORAGE_VERSION)}"
    if block_size is not None and not read_only:
        options += f", BLOCK_SIZE {int(block_size)}"
    with node_errors(path):
        try:
            con.execute(f"ATTACH {quote_literal(str(path))} AS {quote_ident(alias)} ({options})")
        except duckdb.IOException as err:
            if classify_error(err, path) is not None:
                raise
            raise NodeLockedError(f"node {path.stem} ({path}) cannot be opened ({err}); "
                                  "check that the file is readable, then retry") from err
    if not read_only:
        secure(path)  # DuckDB creates a new file under the umask


def detach(con: duckdb.DuckDBPyConnection, alias: str) -> None:
    """Checkpoint and detach a node so its file is complete on disk."""
    con.execute(f"DETACH {quote_ident(alias)}")


def detach_if_attached(con: duckdb.DuckDBPyConnection, alias: str) -> None:
    """Detach a node that failed part-way, if it is still attached (so its file is let go)."""
    attached = con.execute("SELECT count(*) FROM duckdb_databases() WHERE database_name = ?", [alias]).fetchone()
    if attached and attached[0]:
        detach(con, alias)


def template_file(folder: Path, tier: Tier, contracts: list[Contract]) -> Path:
    """An empty node file of this tier in `folder`, made once per set of contract versions (copying
    it is far cheaper than running the DDL for each of 900 new nodes)."""
    path = folder / f".template-{tier}-{layout_digest(contracts)}.duckdb"
    if not path.exists():
        with node_errors(path), atomic_target(path) as tmp:
            con = connect()
            try:
                attach(con, tmp, "t", block_size=BLOCK_SIZES[tier])
                _create_tables(con, "t", tier, contracts)
                con.execute("INSERT INTO t._civicnet.node VALUES (NULL, ?, ?)", [tier, layout_digest(contracts)])
                detach(con, "t")
            finally:
                con.close()
    return path


def _columns_sql(columns: list[tuple[str, str]]) -> str:
    return ", ".join(f"{quote_ident(n)} {t}" for n, t in columns)


def layout_digest(contracts: list[Contract]) -> str:
    """Names the table layout: this module's version plus every contract's name and version."""
    key = repr((LAYOUT_VERSION, sorted((c.name, c.version) for c in contracts)))
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def ensure_node(con: duckdb.DuckDBPyConnection, alias: str, code: str, contracts: list[Contract],
                stamp: bool = True) -> bool:
    """Create the node's tables if missing and record which division it is (idempotent).

    A node already stamped with this layout is left alone (no DDL on the hot path); a node of
    another layout is refused, since new columns are not migrated into old tables. A node fresh
    from its tier's template is stamped with its code here, or, with `stamp` false, left for the
    caller to stamp in its own transaction (`stamp_code`: one commit per new node, not two);
    returns True if it was left so."""
    digest = layout_digest(contracts)
    try:
        row = con.execute(f"SELECT code, layout FROM {meta_table(alias, 'node')}").fetchone()
    except duckdb.CatalogException:
        row = None
    except duckdb.BinderException:  # bookkeeping tables older than the layout stamp itself
        row = (code, "unstamped")
    if row is not None and row[1] == digest:
        if row[0] is None and stamp:  # fresh from the tier's template
            stamp_code(con, alias, code)
        return row[0] is None and not stamp
    if row is not None and row[1] is not None:
        raise NodeLayoutError(f"node {code} was built with table layout {row[1]}, this civicnet writes {digest}; "
                              f"rebuild the home (or this node: {rebuild_hint(code)})")
    tier = tier_of(code)
    _create_tables(con, alias, tier, contracts)
    node = meta_table(alias, "node")
    con.execute(f"DELETE FROM {node}")
    con.execute(f"INSERT INTO {node} VALUES (?, ?, ?)", [code, tier, digest])
    return False


def stamp_code(con: duckdb.DuckDBPyConnection, alias: str, code: str) -> None:
    """Record which division a node fresh from its tier's template is."""
    con.execute(f"UPDATE {meta_table(alias, 'node')} SET code = ? WHERE code IS NULL", [code])


def _create_tables(con: duckdb.DuckDBPyConnection, alias: str, tier: Tier, contracts: list[Contract]) -> None:
    """The node's tables, derived from the contracts (CREATE ... IF NOT EXISTS)."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {qualified(alias, META_SCHEMA)}")
    con.execute(f"CREATE TABLE IF NOT EXISTS {meta_table(alias, 'node')} (code VARCHAR, tier VARCHAR, layout VARCHAR)")
    con.execute(f"""CREATE TABLE IF NOT EXISTS {meta_table(alias, "hwm")} (dataset VARCHAR, seq BIGINT)""")
    con.execute(f"""CREATE TABLE IF NOT EXISTS {meta_table(alias, "tombstones")}
        (dataset VARCHAR, key VARCHAR, division_code VARCHAR, _seq BIGINT, _batch_id VARCHAR, source VARCHAR)""")
    con.execute(f"""CREATE TABLE IF NOT EXISTS {meta_table(alias, "sync_log")}
        (parent VARCHAR, dataset VARCHAR, from_seq BIGINT, to_seq BIGINT, upserts BIGINT,
         removed BIGINT, synced_at TIMESTAMPTZ)""")
    for contract in contracts:
        if tier in contract.reaches:
            cols = column_definitions(contract, tier) + META_COLUMNS
            con.execute(f"CREATE TABLE IF NOT EXISTS {qualified(alias, contract.name)} ({_columns_sql(cols)})")
    if tier == "city":
        _ensure_origin(con, alias, contracts)


def _ensure_origin(con: duckdb.DuckDBPyConnection, alias: str, contracts: list[Contract]) -> None:
    """Tables only the node where batches enter has: history, ledger, quarantine."""
    for contract in contracts:
        cols = [*column_definitions(contract, "city"), ("_valid_from", "TIMESTAMPTZ"),
                ("_valid_to", "TIMESTAMPTZ"), ("_batch_id", "VARCHAR"), ("_seq", "BIGINT")]
        history = qualified(alias, f"{contract.name}_history")
        con.execute(f"CREATE TABLE IF NOT EXISTS {history} ({_columns_sql(cols)})")
    con.execute(f"""CREATE TABLE IF NOT EXISTS {meta_table(alias, "batches")}
        (batch_id VARCHAR, seq BIGINT, dataset VARCHAR, feed VARCHAR, department VARCHAR,
         source_name VARCHAR, received_at TIMESTAMPTZ, decided_at TIMESTAMPTZ, status VARCHAR,
         received BIGINT, applied BIGINT, unchanged BIGINT, quarantined BIGINT, duplicates BIGINT,
         moved BIGINT, held BIGINT, gate JSON, deleted BIGINT, released BIGINT, report_owed BOOLEAN)""")
    con.execute(f"""CREATE TABLE IF NOT EXISTS {meta_table(alias, "quarantine")}
        (batch_id VARCHAR, dataset VARCHAR, feed VARCHAR, department VARCHAR, line BIGINT,
         reasons STRUCT(code VARCHAR, field VARCHAR, message VARCHAR)[], raw JSON, key VARCHAR,
         released_by VARCHAR, released_at TIMESTAMPTZ)""")


def high_water_mark(con: duckdb.DuckDBPyConnection, alias: str, dataset: str) -> int:
    """The last origin sequence number a node has applied for a dataset (0 if none)."""
    row = con.execute(f"SELECT max(seq) FROM {meta_table(alias, 'hwm')} WHERE dataset = ?", [dataset]).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def high_water_marks(con: duckdb.DuckDBPyConnection, alias: str) -> dict[str, int]:
    """Every dataset's mark in one query."""
    rows = con.execute(f"SELECT dataset, max(seq) FROM {meta_table(alias, 'hwm')} GROUP BY 1").fetchall()
    return {d: int(s) for d, s in rows}


def set_high_water_mark(con: duckdb.DuckDBPyConnection, alias: str, dataset: str, seq: int) -> None:
    """Record one mark; callers do this in the same transaction as the data it covers."""
    set_high_water_marks(con, alias, {dataset: seq})


def set_high_water_marks(con: duckdb.DuckDBPyConnection, alias: str, marks: dict[str, int]) -> None:
    """Record several marks in one statement. The table is append-only (the mark is the maximum),
    so it also keeps the history of marks."""
    if marks:
        values = ", ".join("(?, ?)" for _ in marks)
        con.execute(f"INSERT INTO {meta_table(alias, 'hwm')} VALUES {values}",
                    [v for item in marks.items() for v in item])
