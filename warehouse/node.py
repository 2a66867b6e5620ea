"""Node stores: one DuckDB file per division, the same structure at every tier.

A node holds, for every dataset that reaches its tier, the current rows whose anchor lies in
its subtree (`<dataset>`), the tombstones that removed rows from it, its high-water marks and
its sync log. The city node, where batches enter, also keeps SCD2 history, the batch ledger
and quarantine. Files are written in DuckDB's v1.4 storage format so that analysts on DuckDB
1.4 or newer can open the published copies.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from schemas.contract import Contract
from schemas.derive import column_definitions
from schemas.divisions import Tier, tier_of, validate_code
from schemas.errors import TerminalError, TransientError
from schemas.homefiles import make_folder, secure

# DuckDB 2.x writes files that 1.x cannot read unless told to use an older storage version.
STORAGE_VERSION = "v1.4.0"
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


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection, **tables: pa.Table) -> Iterator[None]:
    """One transaction, rolled back on any error (a kill included: DuckDB never commits a half),
    with Arrow `tables` registered under their names for its duration."""
    for name, table in tables.items():
        con.register(name, table)
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        for name in tables:
            con.unregister(name)


def node_path(home: Path, code: str) -> Path:
    """The store of one division: <home>/nodes/<tier>/<code>.duckdb."""
    return home / "nodes" / tier_of(code) / f"{validate_code(code)}.duckdb"


def attach(con: duckdb.DuckDBPyConnection, path: Path, alias: str, read_only: bool = False,
           block_size: int | None = None) -> None:
    """Attach a node file under an alias (created in v1.4 format, with `block_size` if new)."""
    make_folder(path.parent)
    options = "READ_ONLY" if read_only else f"STORAGE_VERSION '{STORAGE_VERSION}'"
    if block_size is not None and not read_only:
        options += f", BLOCK_SIZE {int(block_size)}"
    try:
        con.execute(f"ATTACH '{path}' AS {alias} ({options})")
    except duckdb.IOException as err:
        raise NodeLockedError(f"node {path.stem} is busy or unreadable ({err}); retry later") from None
    if not read_only:
        secure(path)  # DuckDB creates a new file under the umask


def detach(con: duckdb.DuckDBPyConnection, alias: str) -> None:
    """Checkpoint and detach a node so its file is complete on disk."""
    con.execute(f"DETACH {alias}")


def _template(folder: Path, tier: Tier, contracts: list[Contract]) -> Path:
    """An empty node file of this tier, made once per set of contract versions (copying it is
    far cheaper than running the DDL for each of 900 new nodes)."""
    path = folder / f".template-{tier}-{layout_digest(contracts)}.duckdb"
    if not path.exists():
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        con = connect()
        try:
            attach(con, tmp, "t", block_size=BLOCK_SIZES[tier])
            _create_tables(con, "t", tier, contracts)
            con.execute("INSERT INTO t._civicnet.node VALUES (NULL, ?, ?)", [tier, layout_digest(contracts)])
            detach(con, "t")
        finally:
            con.close()
        os.replace(tmp, path)
    return path


def prepare_node(home: Path, code: str, contracts: list[Contract]) -> Path:
    """The node's file, created from its tier's template if it does not exist yet."""
    path = node_path(home, code)
    if not path.exists():
        make_folder(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        shutil.copyfile(_template(path.parent.parent, tier_of(code), contracts), tmp)
        secure(tmp)  # copyfile creates under the umask
        os.replace(tmp, path)
    return path


def _columns_sql(columns: list[tuple[str, str]]) -> str:
    return ", ".join(f'"{n}" {t}' for n, t in columns)


def layout_digest(contracts: list[Contract]) -> str:
    """Names the table layout: this module's version plus every contract's name and version."""
    key = repr((LAYOUT_VERSION, sorted((c.name, c.version) for c in contracts)))
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def ensure_node(con: duckdb.DuckDBPyConnection, alias: str, code: str, contracts: list[Contract]) -> None:
    """Create the node's tables if missing and record which division it is (idempotent).

    A node already stamped with this layout is left alone (no DDL on the hot path); a node of
    another layout is refused, since new columns are not migrated into old tables."""
    digest = layout_digest(contracts)
    try:
        row = con.execute(f"SELECT code, layout FROM {alias}._civicnet.node").fetchone()
    except duckdb.CatalogException:
        row = None
    except duckdb.BinderException:  # bookkeeping tables older than the layout stamp itself
        row = (code, "unstamped")
    if row is not None and row[1] == digest:
        if row[0] is None:  # fresh from the tier's template
            con.execute(f"UPDATE {alias}._civicnet.node SET code = ?", [code])
        return
    if row is not None and row[1] is not None:
        raise NodeLayoutError(f"node {code} was built with table layout {row[1]}, this civicnet writes {digest}; "
                              "rebuild the home (or this node: delete its file and run `civicnet sync`)")
    tier = tier_of(code)
    _create_tables(con, alias, tier, contracts)
    con.execute(f"DELETE FROM {alias}._civicnet.node")
    con.execute(f"INSERT INTO {alias}._civicnet.node VALUES (?, ?, ?)", [code, tier, digest])


def _create_tables(con: duckdb.DuckDBPyConnection, alias: str, tier: Tier, contracts: list[Contract]) -> None:
    """The node's tables, derived from the contracts (CREATE ... IF NOT EXISTS)."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {alias}._civicnet")
    con.execute(f"CREATE TABLE IF NOT EXISTS {alias}._civicnet.node (code VARCHAR, tier VARCHAR, layout VARCHAR)")
    con.execute(f"""CREATE TABLE IF NOT EXISTS {alias}._civicnet.hwm (dataset VARCHAR, seq BIGINT)""")
    con.execute(f"""CREATE TABLE IF NOT EXISTS {alias}._civicnet.tombstones
        (dataset VARCHAR, key VARCHAR, division_code VARCHAR, _seq BIGINT, _batch_id VARCHAR, source VARCHAR)""")
    con.execute(f"""CREATE TABLE IF NOT EXISTS {alias}._civicnet.sync_log
        (parent VARCHAR, dataset VARCHAR, from_seq BIGINT, to_seq BIGINT, upserts BIGINT,
         removed BIGINT, synced_at TIMESTAMPTZ)""")
    for contract in contracts:
        if tier in contract.reaches:
            cols = column_definitions(contract, tier) + META_COLUMNS
            con.execute(f'CREATE TABLE IF NOT EXISTS {alias}."{contract.name}" ({_columns_sql(cols)})')
    if tier == "city":
        _ensure_origin(con, alias, contracts)


def _ensure_origin(con: duckdb.DuckDBPyConnection, alias: str, contracts: list[Contract]) -> None:
    """Tables only the node where batches enter has: history, ledger, quarantine."""
    for contract in contracts:
        cols = [*column_definitions(contract, "city"), ("_valid_from", "TIMESTAMPTZ"),
                ("_valid_to", "TIMESTAMPTZ"), ("_batch_id", "VARCHAR"), ("_seq", "BIGINT")]
        con.execute(f'CREATE TABLE IF NOT EXISTS {alias}."{contract.name}_history" ({_columns_sql(cols)})')
    con.execute(f"""CREATE TABLE IF NOT EXISTS {alias}._civicnet.batches
        (batch_id VARCHAR, seq BIGINT, dataset VARCHAR, feed VARCHAR, department VARCHAR,
         source_name VARCHAR, received_at TIMESTAMPTZ, decided_at TIMESTAMPTZ, status VARCHAR,
         received BIGINT, applied BIGINT, unchanged BIGINT, quarantined BIGINT, duplicates BIGINT,
         moved BIGINT, held BIGINT, gate JSON, deleted BIGINT, released BIGINT, report_owed BOOLEAN)""")
    con.execute(f"""CREATE TABLE IF NOT EXISTS {alias}._civicnet.quarantine
        (batch_id VARCHAR, dataset VARCHAR, feed VARCHAR, department VARCHAR, line BIGINT,
         reasons STRUCT(code VARCHAR, field VARCHAR, message VARCHAR)[], raw JSON, key VARCHAR,
         released_by VARCHAR, released_at TIMESTAMPTZ)""")


def high_water_mark(con: duckdb.DuckDBPyConnection, alias: str, dataset: str) -> int:
    """The last origin sequence number a node has applied for a dataset (0 if none)."""
    row = con.execute(f"SELECT max(seq) FROM {alias}._civicnet.hwm WHERE dataset = ?", [dataset]).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def high_water_marks(con: duckdb.DuckDBPyConnection, alias: str) -> dict[str, int]:
    """Every dataset's mark in one query."""
    rows = con.execute(f"SELECT dataset, max(seq) FROM {alias}._civicnet.hwm GROUP BY 1").fetchall()
    return {d: int(s) for d, s in rows}


def set_high_water_mark(con: duckdb.DuckDBPyConnection, alias: str, dataset: str, seq: int) -> None:
    """Record one mark; callers do this in the same transaction as the data it covers."""
    set_high_water_marks(con, alias, {dataset: seq})


def set_high_water_marks(con: duckdb.DuckDBPyConnection, alias: str, marks: dict[str, int]) -> None:
    """Record several marks in one statement. The table is append-only (the mark is the maximum),
    so it also keeps the history of marks."""
    if marks:
        values = ", ".join("(?, ?)" for _ in marks)
        con.execute(f"INSERT INTO {alias}._civicnet.hwm VALUES {values}",
                    [v for item in marks.items() for v in item])
