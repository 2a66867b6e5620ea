"""A node's store of record on a PostgreSQL server: one schema per node, streamed as Arrow.

Server mode keeps a node's rows in the schema `civicnet_<code>` of a PostgreSQL database (so one
district's subtree can live on its own server). Its tables are those of a DuckDB node of the same
tier, column for column (derived from the tier's template, never retyped), with the bookkeeping
tables `_civicnet.<t>` named `_civicnet_<t>` in the node's schema, and one more row in
`_civicnet_node`: the node's `version`, raised by every write.

Rows cross between DuckDB and PostgreSQL as Arrow record batches through the ADBC PostgreSQL
driver (PostgreSQL's binary COPY underneath): `copy_to_duckdb` streams a whole node into a local
DuckDB file (its working copy: warehouse.stores), `apply_effects` writes what one DuckDB
transaction changed, in one PostgreSQL transaction with the version check and bump. Nothing here
holds a node's rows in Python objects.

A PostgreSQL JSON value (the quarantine's reasons and raw rows, a ledger row's gate) travels as
JSON text and is `jsonb` on the server.
"""

from __future__ import annotations

import contextlib
import os
import re
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as pgdb
import duckdb
import pyarrow as pa

from schemas.divisions import validate_code
from schemas.errors import TerminalError, TransientError
from schemas.sql import qualified, quote_ident, quote_literal

SCHEMA_PREFIX = "civicnet_"
META_SCHEMA = "_civicnet"  # the DuckDB schema of a node's bookkeeping tables (warehouse.node)


class ServerUnreachableError(TransientError):
    """The PostgreSQL server of a node store cannot be reached (down, refused, unknown database)."""


class ServerNodeChangedError(TransientError):
    """A server node was written by someone else between reading it and writing it: retry."""


class ServerNodeLayoutError(TerminalError):
    """A server node was written with another table layout."""


def redacted(url: str) -> str:
    """A store URL as messages and status show it: no password, no query string."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return urllib.parse.urlunsplit((parts.scheme, user + host, parts.path, "", ""))


def schema_name(code: str) -> str:
    """The PostgreSQL schema of one node."""
    return SCHEMA_PREFIX + validate_code(code)


def server_table(code: str, table: str) -> str:
    """The quoted server name of a node table given by its DuckDB name (`residents`,
    `residents_history`, `_civicnet.hwm`)."""
    schema, _, name = table.rpartition(".")
    return qualified(schema_name(code), f"{META_SCHEMA}_{name}" if schema == META_SCHEMA else name)


# DuckDB column type → the server's; a type not here is refused when the node is created
_TYPES = {"VARCHAR": "text", "BIGINT": "bigint", "INTEGER": "integer", "DOUBLE": "double precision",
          "DATE": "date", "BOOLEAN": "boolean", "TIMESTAMP WITH TIME ZONE": "timestamptz", "JSON": "jsonb"}
_STRUCT_LIST = re.compile(r"^STRUCT\(.*\)\[\]$")


@dataclass(frozen=True)
class Column:
    name: str
    duck: str  # its DuckDB type

    @property
    def is_json(self) -> bool:
        """Travels as JSON text (a JSON value, or a list of structs, which the server keeps as jsonb)."""
        return self.duck == "JSON" or bool(_STRUCT_LIST.match(self.duck))

    @property
    def server(self) -> str:
        if self.is_json:
            return "jsonb"
        if self.duck not in _TYPES:
            raise ServerNodeLayoutError(
                f"column {self.name} has DuckDB type {self.duck}, which server nodes do not keep")
        return _TYPES[self.duck]


@dataclass(frozen=True)
class Shape:
    """One node table: its DuckDB name (`residents`, `_civicnet.hwm`) and its columns in order."""

    table: str
    columns: tuple[Column, ...]

    def duck_select(self, alias: str) -> str:
        """The table's columns as they travel from DuckDB (JSON as text)."""
        return ", ".join(f"CAST(to_json({quote_ident(c.name)}) AS VARCHAR) AS {quote_ident(c.name)}" if c.is_json
                         else quote_ident(c.name) for c in self.columns)

    def duck_from_text(self) -> str:
        """The columns as they arrive in DuckDB from the server (JSON text cast back)."""
        return ", ".join(f"CAST(CAST({quote_ident(c.name)} AS JSON) AS {c.duck})" if c.is_json
                         else quote_ident(c.name) for c in self.columns)

    def server_select(self) -> str:
        """The columns as they travel from the server (jsonb as text)."""
        return ", ".join(f"{quote_ident(c.name)}::text AS {quote_ident(c.name)}" if c.is_json
                         else quote_ident(c.name) for c in self.columns)

    def server_from_text(self) -> str:
        return ", ".join(f"{quote_ident(c.name)}::jsonb" if c.is_json else quote_ident(c.name) for c in self.columns)


def shapes(con: duckdb.DuckDBPyConnection, alias: str) -> list[Shape]:
    """Every table of the DuckDB node attached as `alias` (a tier's template: the layout both
    engines share), in a stable order."""
    rows = con.execute("""SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns()
                          WHERE database_name = ? ORDER BY schema_name, table_name, column_index""",
                       [alias]).fetchall()
    out: dict[str, list[Column]] = {}
    for schema, table, column, kind in rows:
        name = table if schema == "main" else f"{schema}.{table}"
        out.setdefault(name, []).append(Column(column, kind))
    return [Shape(t, tuple(cols)) for t, cols in sorted(out.items())]


_connections: dict[tuple[int, str], Any] = {}


def _connect(url: str) -> Any:
    """A connection to the store's server (one per process and URL, autocommit off)."""
    key = (os.getpid(), url)
    con = _connections.get(key)
    if con is not None:
        return con
    try:
        con = pgdb.connect(url)
    except adbc_driver_manager.Error as err:
        raise ServerUnreachableError(
            f"the node store {redacted(url)} cannot be reached ({_first_line(err)}): check that the PostgreSQL "
            "server is running and the database exists (createdb), then run the same command again") from err
    _connections[key] = con
    return con


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return redacted_text(text[0] if text else type(err).__name__)


_URL_IN_TEXT = re.compile(r"postgres(?:ql)?://\S+")


def redacted_text(text: str) -> str:
    """A driver's message with any URL in it redacted."""
    return _URL_IN_TEXT.sub(lambda m: redacted(m.group(0)), text)


def forget_connection(url: str) -> None:
    """Close and drop this process's connection to `url` (after an error left it unusable)."""
    con = _connections.pop((os.getpid(), url), None)
    if con is not None:
        with contextlib.suppress(adbc_driver_manager.Error):  # already broken: nothing more to release
            con.close()


@contextmanager
def server_transaction(url: str) -> Iterator[Any]:
    """A cursor in one transaction on the store's server: committed on success, rolled back on any
    error (and the connection dropped if the error left it unusable)."""
    con = _connect(url)
    cur = con.cursor()
    try:
        yield cur
        con.commit()
    except BaseException:
        try:
            con.rollback()
        except adbc_driver_manager.Error:
            forget_connection(url)
        raise
    finally:
        cur.close()


_UNDEFINED = ("42P01", "3F000")  # PostgreSQL's undefined_table, invalid_schema_name


def ping(url: str) -> None:
    """Raise ServerUnreachableError unless the store's server answers a query."""
    with server_transaction(url) as cur:
        cur.execute("SELECT 1")
        cur.fetchall()


def node_row(url: str, code: str) -> tuple[str | None, str, int] | None:
    """(code, layout, version) of a server node, or None if it has no schema yet (one query)."""
    try:
        with server_transaction(url) as cur:
            cur.execute(f"SELECT code, layout, version FROM {server_table(code, META_SCHEMA + '.node')}")
            rows = cur.fetchall()
    except adbc_driver_manager.ProgrammingError as err:
        if getattr(err, "sqlstate", None) in _UNDEFINED:
            return None
        raise
    if not rows:
        return None
    found, layout, version = rows[0]
    return found, str(layout), int(version)


def create_node(url: str, code: str, tier: str, layout: str, table_shapes: Sequence[Shape],
                keys: Mapping[str, Sequence[str]]) -> None:
    """The node's schema and tables on the server, stamped with its code, tier and layout at version 0
    (idempotent: a node that exists is left alone), in one statement. `keys` names each data table's
    key columns: they are indexed, as is `division_code`, so that an effect naming a few keys (a
    single move) probes the index instead of scanning the table."""
    statements = [f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema_name(code))}"]
    for shape in table_shapes:
        cols = ", ".join(f"{quote_ident(c.name)} {c.server}" for c in shape.columns)
        if shape.table == f"{META_SCHEMA}.node":
            cols += ", version bigint NOT NULL DEFAULT 0"
        table = server_table(code, shape.table)
        statements.append(f"CREATE TABLE IF NOT EXISTS {table} ({cols})")
        if shape.table.startswith(META_SCHEMA):
            continue
        indexed = [["division_code"]] if any(c.name == "division_code" for c in shape.columns) else []
        indexed += [list(keys[shape.table])] if shape.table in keys else []
        for columns in indexed:
            index = quote_ident(f"{shape.table}_{'_'.join(columns)}")
            statements.append(f"CREATE INDEX IF NOT EXISTS {index} ON {table} "
                              f"({', '.join(quote_ident(c) for c in columns)})")
    node = server_table(code, f"{META_SCHEMA}.node")
    statements.append(f"INSERT INTO {node} (code, tier, layout, version) SELECT {literal(code)}, {literal(tier)}, "
                      f"{literal(layout)}, 0 WHERE NOT EXISTS (SELECT 1 FROM {node})")
    with server_transaction(url) as cur:
        cur.execute(_block(statements))


def _block(statements: Sequence[str]) -> str:
    """Several statements as one (a DO block: the driver prepares one statement per call)."""
    body = "".join(f"{s};\n" for s in statements)
    tag = "$civicnet$"
    if tag in body:
        raise ValueError("a statement of the block holds its quoting tag")
    return f"DO {tag} BEGIN\n{body}END {tag}"


def copy_to_duckdb(url: str, code: str, con: duckdb.DuckDBPyConnection, alias: str,
                   table_shapes: Sequence[Shape]) -> int:
    """Stream every table of a server node into the (empty) DuckDB node attached as `alias`, in one
    server transaction (a consistent snapshot: REPEATABLE READ); returns the version copied."""
    with server_transaction(url) as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute(f"SELECT version FROM {server_table(code, META_SCHEMA + '.node')}")
        version = int(cur.fetchall()[0][0])
        for shape in table_shapes:
            cur.execute(f"SELECT {shape.server_select()} FROM {server_table(code, shape.table)}")
            reader = cur.fetch_record_batch()
            con.register("_from_server", reader)
            try:
                target = _duck_table(alias, shape.table)
                con.execute(f"DELETE FROM {target}")  # the template's own stamp row, if any
                con.execute(f"INSERT INTO {target} SELECT {shape.duck_from_text()} FROM _from_server")
            finally:
                con.unregister("_from_server")
    return version


def _duck_table(alias: str, table: str) -> str:
    schema, _, name = table.rpartition(".")
    return qualified(alias, schema or "main", name)


@dataclass(frozen=True)
class Effect:
    """What one write changed in one table of a node, as a predicate both engines can evaluate.

    The server deletes its rows matching `where`, then inserts the DuckDB node's rows matching it
    (their after-images): so `where` must hold for every row the write touched, before and after.
    `ids` is a DuckDB query of text ids the predicate names as `{ids}` (a key list the write
    computed, such as the keys a batch changed); `where` is plain SQL of the table's own columns,
    with literals inline (no parameters)."""

    table: str
    where: str
    ids: str | None = None


def _ids_sql(effect: Effect, ids_table: str) -> str:
    return effect.where.replace("{ids}", f"(SELECT _id FROM {ids_table})")


def apply_effects(url: str, code: str, expected: int, con: duckdb.DuckDBPyConnection, alias: str,
                  effects: Sequence[Effect], table_shapes: Sequence[Shape]) -> int:
    """Write `effects` of the DuckDB node attached as `alias` (read inside its open transaction) to the
    server node in one server transaction, which first checks the node is still at version `expected`
    (else ServerNodeChangedError: someone else wrote it) and then raises it; returns the new version.

    In both engines the table is aliased `t`, so a predicate may name its columns as `t.<column>`. The
    ids and after-images travel as Arrow (an effect with no ids, or no rows, sends none); the deletes
    and inserts then run as one statement."""
    by_table = {s.table: s for s in table_shapes}
    if any(e.table == f"{META_SCHEMA}.node" for e in effects):
        raise ValueError("a server node's stamp row is written only when the node is created")
    with server_transaction(url) as cur:
        node = server_table(code, f"{META_SCHEMA}.node")
        cur.execute(f"SELECT version FROM {node} FOR UPDATE")
        found = cur.fetchall()
        if not found or int(found[0][0]) != expected:
            raise ServerNodeChangedError(
                f"node {code} in {redacted(url)} is at version {found[0][0] if found else 'none'}, this copy was "
                f"made at {expected}: another process wrote it meanwhile; nothing was written, run again")
        statements = []
        for i, effect in enumerate(effects):
            statements += _send_effect(cur, code, con, alias, effect, by_table[effect.table], i)
        statements.append(f"UPDATE {node} SET version = {expected + 1}")
        cur.execute(_block(statements))
    return expected + 1


def _send_effect(cur: Any, code: str, con: duckdb.DuckDBPyConnection, alias: str, effect: Effect,
                 shape: Shape, i: int) -> list[str]:
    """Send one effect's ids and after-images to temporary tables; the statements that apply it."""
    where = duck_where = effect.where
    if effect.ids is not None:
        ids = con.sql(f"SELECT DISTINCT CAST(_id AS VARCHAR) AS _id FROM ({effect.ids}) _i").to_arrow_table()
        if not ids.num_rows:
            return []  # no key changed: nothing to delete, nothing to insert
        cur.adbc_ingest(f"_civicnet_ids{i}", ids, mode="replace", temporary=True)
        cur.execute(f"ANALYZE _civicnet_ids{i}")  # so a few ids probe the key index, many hash-join
        con.register("_effect_ids", ids)
        duck_where = _ids_sql(effect, "_effect_ids")
        where = _ids_sql(effect, f"_civicnet_ids{i}")
    try:
        target = server_table(code, shape.table)
        statements = [f"DELETE FROM {target} t WHERE {where}"]
        source = f"FROM {_duck_table(alias, shape.table)} t WHERE {duck_where}"
        (count,), = con.execute(f"SELECT count(*) {source}").fetchall()
        if count:
            rows: pa.RecordBatchReader = con.sql(f"SELECT {shape.duck_select(alias)} {source}").to_arrow_reader()
            try:
                cur.adbc_ingest(f"_civicnet_rows{i}", rows, mode="replace", temporary=True)
            finally:
                rows.close()
            names = ", ".join(quote_ident(c.name) for c in shape.columns)
            statements.append(f"INSERT INTO {target} ({names}) SELECT {shape.server_from_text()} "
                              f"FROM _civicnet_rows{i}")
        return statements
    finally:
        if effect.ids is not None:
            con.unregister("_effect_ids")


def drop_nodes(url: str, codes: Sequence[str]) -> None:
    """Remove these nodes' schemas from the server (a test's or a rebuild's clean-up)."""
    with server_transaction(url) as cur:
        for code in codes:
            cur.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema_name(code))} CASCADE")


def literal(value: object) -> str:
    """A value as an SQL literal both engines read the same (text, integers)."""
    if isinstance(value, bool) or value is None:
        raise TypeError(f"no portable literal for {value!r}")
    if isinstance(value, int):
        return str(value)
    return quote_literal(str(value))
