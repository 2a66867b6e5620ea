"""SQL connector: a department table (PostgreSQL, MariaDB/MySQL, SQLite) read through SQLAlchemy into Parquet.

Where: `source.url` (never with a password) or `source.conn_id`, an Airflow connection whose password
only ever lives inside a `sqlalchemy.engine.URL`; messages show the URL with the password hidden.

Two modes, one payload per pull, every value as text (None stays null, dates ISO, decimals exact):

- snapshot (no `cursor`): the whole table, ordered by its primary key (or by all columns), so the
  same content gives the same bytes and lands once.
- incremental (`cursor`, a timestamp or increasing number column): rows with
  `cursor >= watermark - lag_seconds`, ordered by cursor and key. The boundary is inclusive, and the
  state remembers a content hash of every row inside the lag window below the watermark
  (`boundary`), so a row re-read unchanged is skipped while a row committed later with an OLDER
  cursor value, but still inside the lag window, is taken exactly once. This is the protection
  against out-of-order commits (long transactions, clock skew between writers); a row that commits
  more than `lag_seconds` behind the watermark is missed here and must be caught by reconciliation
  (counts and checksums against the source). Rows whose cursor is NULL are taken only by a pull
  without a watermark (the first one). A text cursor is compared as text; `lag_seconds` applies to
  it only when it holds ISO timestamps written in one format and one UTC offset. The boundary, the
  lag window, the content hash and the state's shape are `connectors/cursor.py`'s.

Soft deletes are ordinary columns here: a row marked deleted is read like any other, so its marker
reaches the conform step, which turns it into a tombstone.

Rows are streamed (`stream_results`, `yield_per=chunk_rows`) and written chunk by chunk into the
Parquet file, so only one chunk of Python rows exists at a time.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from connectors.cursor import CursorError, CursorKind, Window, key_text, kind_of, read_state
from connectors.feeds import SqlSource
from connectors.payload import Payload
from connectors.secrets import Connection, get_connection
from schemas.errors import TerminalError, TransientError
from schemas.media import PARQUET

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DRIVERS = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql",
           "mariadb": "mysql+pymysql", "sqlite": "sqlite"}
_CONNECT_ARGS: dict[str, dict[str, Any]] = {"postgresql": {"connect_timeout": 15}, "mysql": {"connect_timeout": 15}}
_CREDENTIALS = re.compile(r"password authentication failed|role \".*\" does not exist|access denied|"
                          r"no password supplied", re.IGNORECASE)
_NO_PRIVILEGE = re.compile(r"command denied|permission denied", re.IGNORECASE)
_UNKNOWN_DATABASE = re.compile(r"database \".*\" does not exist|unknown database", re.IGNORECASE)
_TRANSIENT = re.compile(r"refused|could not connect|can't connect|timed? ?out|lock|gone away|lost connection|"
                        r"closed the connection|starting up|shutting down|too many connections|reset by peer",
                        re.IGNORECASE)


class SqlSourceError(TerminalError):
    """A department database cannot be read as configured: bad name, missing table, unknown database."""


class SqlCredentialsError(TerminalError):
    """The department database refused the login of a feed's connection."""


class SqlUnavailableError(TransientError):
    """The department database is unreachable, busy or locked right now; a retry may help."""


def cursor_kind(column: sa.Column[Any]) -> CursorKind:
    """The cursor kind of a reflected column, from its Python type; a clear error for other types."""
    try:
        python_type: type = column.type.python_type
    except NotImplementedError:
        python_type = object
    kind = kind_of(python_type)
    if kind is None:
        raise SqlSourceError(f"cursor column {column.name!r} has type {column.type}, which cannot order "
                             "increments; use a timestamp, date, number or ISO text column as 'cursor'")
    return kind


def text_value(value: Any) -> str | None:
    """A database value as the text a department meant: None stays null, dates ISO, Decimal exact."""
    if value is None:
        return None
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def connection_url(conn: Connection) -> sa.URL:
    """The SQLAlchemy URL of an Airflow connection; the password stays inside the URL object."""
    driver = DRIVERS.get(conn.conn_type.lower())
    if driver is None:
        raise SqlSourceError(f"connection {conn.conn_id!r} has type {conn.conn_type!r}; the SQL connector "
                             f"reads {', '.join(sorted(DRIVERS))}: fix the connection's type")
    if driver == "sqlite":  # Airflow keeps an SQLite file path in `host`
        return sa.URL.create("sqlite", database=conn.host or conn.schema or None)
    return sa.URL.create(driver, username=conn.login, password=conn.password, host=conn.host or None,
                         port=conn.port, database=conn.schema or None)


def check_identifier(value: str | None, setting: str) -> None:
    """Refuse a table, schema or column name that is not a plain SQL identifier."""
    if value is not None and not IDENTIFIER.fullmatch(value):
        raise SqlSourceError(f"{setting} {value!r} is not a plain SQL identifier (letters, digits and '_', not "
                             f"starting with a digit); fix '{setting}' in the feed config")


def classify_error(err: sa.exc.DBAPIError, where: str, secret: str | None) -> TerminalError | TransientError:
    """A driver error as a terminal or transient civicnet error that names the place, never the password."""
    detail = " ".join(str(err.orig).split())
    if secret:
        detail = detail.replace(secret, "***")
    if _CREDENTIALS.search(detail):
        return SqlCredentialsError(f"bad credentials in connection {where}: {detail}; fix the login and "
                                   "password of the Airflow connection")
    if _NO_PRIVILEGE.search(detail):
        return SqlSourceError(f"the login of {where} may not read the table: {detail}; ask the department to "
                              "grant SELECT")
    if _UNKNOWN_DATABASE.search(detail):
        return SqlSourceError(f"unknown database at {where}: {detail}; fix the database name of the feed's URL "
                              "or connection")
    if err.connection_invalidated or _TRANSIENT.search(detail) or isinstance(err, sa.exc.OperationalError):
        return SqlUnavailableError(f"cannot read {where} now: {detail}")
    return SqlSourceError(f"reading {where} failed: {detail}")


def text_column(values: Sequence[Any]) -> pa.Array:
    """One column of database values as text, exactly as `text_value` gives them. Columns of text and
    whole numbers (most of a department table) convert in Arrow; any other column value by value."""
    try:
        arr = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        arr = None
    if arr is not None and any(is_type(arr.type) for is_type in (pa.types.is_string, pa.types.is_integer,
                                                                  pa.types.is_null)):
        return arr.cast(pa.string())
    return pa.array([text_value(v) for v in values], pa.string())


class ParquetSink:
    """Text columns written chunk by chunk (one row group each) into an in-memory Parquet file."""

    def __init__(self, names: Sequence[str]) -> None:
        self.schema = pa.schema([(n, pa.string()) for n in names])
        self._buffer = io.BytesIO()
        self._writer = pq.ParquetWriter(self._buffer, self.schema, compression="zstd")

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        """Append rows as one row group of text columns (nothing for no rows); values already text stay
        as they are, others become text as `text_value` says."""
        if rows:
            columns = [text_column(c) for c in zip(*rows, strict=True)]
            self._writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=self.schema))

    def close(self) -> bytes:
        """The finished file."""
        self._writer.close()
        return self._buffer.getvalue()


def _safe(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z.+-]+", "_", text)


@dataclass(frozen=True)
class SqlConnector:
    """Reads one table of a department database: a snapshot, or the increments since the last pull."""

    source: SqlSource
    key: tuple[str, ...]

    def __post_init__(self) -> None:
        for value, setting in ((self.source.table, "table"), (self.source.db_schema, "db_schema"),
                               (self.source.cursor, "cursor")):
            check_identifier(value, setting)

    def url(self) -> sa.URL:
        """Where the table lives (from `url`, or built from the Airflow connection `conn_id`)."""
        if self.source.url is not None:
            return sa.make_url(self.source.url)
        assert self.source.conn_id is not None
        return connection_url(get_connection(self.source.conn_id))

    def fetch(self, state: Mapping[str, Any]) -> Iterator[Payload]:
        """One Parquet payload of text columns; none in incremental mode when no row is new or changed."""
        payload = self._read(state)
        if payload is not None:
            yield payload

    def _read(self, state: Mapping[str, Any]) -> Payload | None:
        url = self.url()
        where = url.render_as_string(hide_password=True)
        if self.source.conn_id is not None:
            where = f"{self.source.conn_id!r} ({where})"
        _check_sqlite_file(url, where)
        try:
            engine = sa.create_engine(url, poolclass=sa.pool.NullPool,
                                      connect_args=_CONNECT_ARGS.get(url.get_backend_name(), {}))
        except (sa.exc.NoSuchModuleError, ImportError):
            raise SqlSourceError(f"no database driver for {where}; use a postgresql+psycopg, mysql+pymysql or "
                                 "sqlite URL") from None
        try:
            with engine.connect() as conn:
                table = self._reflect(conn, where)
                if self.source.cursor is None:
                    return self._snapshot(conn, table)
                return self._increment(conn, table, state)
        except sa.exc.DBAPIError as err:
            raise classify_error(err, where, url.password) from None
        finally:
            engine.dispose()

    def _reflect(self, conn: sa.Connection, where: str) -> sa.Table:
        try:
            table = sa.Table(self.source.table, sa.MetaData(), schema=self.source.db_schema, autoload_with=conn)
        except sa.exc.NoSuchTableError:
            raise SqlSourceError(f"table {self.source.table!r} does not exist at {where}; fix 'table' (or "
                                 "'db_schema') in the feed config") from None
        wanted = [*self.key, *([self.source.cursor] if self.source.cursor else [])]
        missing = [c for c in wanted if c not in table.columns]
        if missing:
            raise SqlSourceError(f"table {self.source.table!r} at {where} has no column(s) {missing} (it has "
                                 f"{list(table.columns.keys())}); fix 'cursor' or 'fields' in the feed config")
        return table

    def _chunks(self, conn: sa.Connection, query: sa.Select[Any]) -> Iterator[Sequence[sa.Row[Any]]]:
        result = conn.execution_options(stream_results=True, yield_per=self.source.chunk_rows).execute(query)
        yield from result.partitions()

    def _snapshot(self, conn: sa.Connection, table: sa.Table) -> Payload:
        order = list(table.primary_key.columns) or list(table.columns)
        sink = ParquetSink(list(table.columns.keys()))
        for rows in self._chunks(conn, sa.select(table).order_by(*order)):
            sink.write(rows)
        return Payload(name=f"{table.name}.parquet", data=sink.close(), media_type=PARQUET)

    def _increment(self, conn: sa.Connection, table: sa.Table, state: Mapping[str, Any]) -> Payload | None:
        assert self.source.cursor is not None
        cursor = table.columns[self.source.cursor]
        kind = cursor_kind(cursor)
        try:
            window = Window(read_state(state, kind), self.source.lag_seconds)
        except CursorError as err:
            raise SqlSourceError(str(err)) from None
        low = window.previous.low(window.lag)
        names = list(table.columns.keys())
        key_at = [names.index(k) for k in self.key] or list(range(len(names)))
        at = names.index(cursor.name)
        query = sa.select(table).order_by(cursor, *(table.columns[names[i]] for i in key_at))
        if low is not None:
            query = query.where(cursor >= low)
        sink = ParquetSink(names)
        for rows in self._chunks(conn, query):
            # text conversion column by column (in Arrow where it can), rows only for the window's hashes
            texts = list(zip(*(text_column(c).to_pylist() for c in zip(*rows, strict=True)), strict=True)) \
                if rows else []
            sink.write([t for t, row in zip(texts, rows, strict=True)
                        if window.take(key_text([t[i] for i in key_at]), row[at], dict(zip(names, t, strict=True)))])
            window.settle()
        data = sink.close()
        if not window.taken:
            return None
        new_state = window.state().saved()
        span = f"{'start' if low is None else kind.dump(low)}-{new_state['watermark']}"
        return Payload(name=f"{table.name}-{_safe(span)}.parquet", data=data, media_type=PARQUET, cursor=new_state)


def _check_sqlite_file(url: sa.URL, where: str) -> None:
    """An SQLite URL must name an existing file: SQLite would silently create an empty one."""
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database not in ("", ":memory:") and not database.startswith("file:") \
            and not Path(database).is_file():
        raise SqlSourceError(f"SQLite database file {database!r} does not exist ({where}); fix the feed's URL or "
                             "connection")
