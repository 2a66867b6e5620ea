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
  it only when it holds ISO timestamps written in one format and one UTC offset.

Soft deletes are ordinary columns here: a row marked deleted is read like any other, so its marker
reaches the conform step, which turns it into a tombstone.

Rows are streamed (`stream_results`, `yield_per=chunk_rows`) and written chunk by chunk into the
Parquet file, so only one chunk of Python rows exists at a time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from connectors.feeds import SqlSource
from connectors.parse import PARQUET
from connectors.payload import Payload
from connectors.secrets import Connection, get_connection
from schemas.errors import TerminalError, TransientError

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


@dataclass(frozen=True)
class CursorKind:
    """How one type of cursor value is stored in the state, read back, and moved back by the lag."""

    name: str
    dump: Callable[[Any], Any]
    load: Callable[[Any], Any]
    minus: Callable[[Any, float], Any]


def _minus_number(value: Any, lag: float) -> Any:
    if isinstance(value, int):
        return value - math.ceil(lag)
    return value - (Decimal(str(lag)) if isinstance(value, Decimal) else lag)


def _minus_text(value: str, lag: float) -> str:
    """An ISO timestamp text moved back by `lag` seconds in the same layout; other text is left as is."""
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if lag == 0:
        return value
    earlier = moment - dt.timedelta(seconds=lag)
    if len(value) == 10:
        return earlier.date().isoformat()
    fraction = len(value) > 19 and value[19] == "."
    return earlier.isoformat(sep=value[10], timespec="microseconds" if fraction else "seconds")


def _minus_date(value: dt.date, lag: float) -> dt.date:
    return (dt.datetime.combine(value, dt.time()) - dt.timedelta(seconds=lag)).date()


KINDS = {
    "datetime": CursorKind("datetime", dt.datetime.isoformat, dt.datetime.fromisoformat,
                           lambda v, lag: v - dt.timedelta(seconds=lag)),
    "date": CursorKind("date", dt.date.isoformat, dt.date.fromisoformat, _minus_date),
    "number": CursorKind("number", lambda v: v, lambda v: v, _minus_number),
    "decimal": CursorKind("decimal", str, Decimal, _minus_number),
    "text": CursorKind("text", str, str, _minus_text),
}
_PYTHON_KINDS: list[tuple[type, str]] = [(bool, ""), (dt.datetime, "datetime"), (dt.date, "date"),
                                         (int, "number"), (float, "number"), (Decimal, "decimal"), (str, "text")]


def cursor_kind(column: sa.Column[Any]) -> CursorKind:
    """The cursor kind of a reflected column, from its Python type; a clear error for other types."""
    try:
        python_type: type = column.type.python_type
    except NotImplementedError:
        python_type = object
    name = next((kind for base, kind in _PYTHON_KINDS if issubclass(python_type, base)), "")
    if not name:
        raise SqlSourceError(f"cursor column {column.name!r} has type {column.type}, which cannot order "
                             "increments; use a timestamp, date, number or ISO text column as 'cursor'")
    return KINDS[name]


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


def _digest(values: Sequence[str | None]) -> str:
    text = json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def _boundary(entries: Iterator[tuple[str, str]]) -> dict[str, str | list[str]]:
    """key json → content sha1; a key that occurs more than once (no unique key) keeps a sorted list."""
    by_key: dict[str, set[str]] = {}
    for key, digest in entries:
        by_key.setdefault(key, set()).add(digest)
    return {k: next(iter(v)) if len(v) == 1 else sorted(v) for k, v in sorted(by_key.items())}


@dataclass
class Window:
    """The incremental bookkeeping of one pull: what to skip, what to remember for the next pull."""

    kind: CursorKind
    lag: float
    previous: Mapping[str, str | list[str]]
    watermark: Any = None
    recent: deque[tuple[Any, str, str]] = field(default_factory=deque)
    taken: int = 0

    def take(self, cursor: Any, key: Sequence[str | None], texts: Sequence[str | None]) -> bool:
        """Whether a read row is new or changed (else it was taken unchanged by the last pull)."""
        key_json, digest = json.dumps(list(key), ensure_ascii=False), _digest(texts)
        if cursor is not None:
            self.recent.append((cursor, key_json, digest))
            if self.watermark is None or cursor > self.watermark:
                self.watermark = cursor
        seen = self.previous.get(key_json)
        new = digest != seen and not (isinstance(seen, list) and digest in seen)
        self.taken += new
        return new

    def prune(self) -> None:
        """Forget rows that fell out of the lag window below the watermark (bounded memory)."""
        if self.watermark is not None:
            floor = self.kind.minus(self.watermark, self.lag)
            while self.recent and self.recent[0][0] < floor:
                self.recent.popleft()

    def state(self) -> dict[str, Any]:
        """The state that covers every row read: watermark, cursor type and the boundary rows."""
        floor = None if self.watermark is None else self.kind.minus(self.watermark, self.lag)
        entries = ((k, d) for v, k, d in self.recent if floor is not None and v >= floor)
        return {"watermark": None if self.watermark is None else self.kind.dump(self.watermark),
                "cursor_type": self.kind.name, "boundary": _boundary(entries)}


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
        window = Window(kind, self.source.lag_seconds, state.get("boundary") or {}, _watermark(state, kind))
        low = None if window.watermark is None else kind.minus(window.watermark, window.lag)
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
                        if window.take(row[at], [t[i] for i in key_at], t)])
            window.prune()
        data = sink.close()
        if not window.taken:
            return None
        new_state = window.state()
        span = f"{'start' if low is None else kind.dump(low)}-{new_state['watermark']}"
        return Payload(name=f"{table.name}-{_safe(span)}.parquet", data=data, media_type=PARQUET, cursor=new_state)


def _watermark(state: Mapping[str, Any], kind: CursorKind) -> Any:
    """The watermark of the last pull as a value of the cursor column's type (None on a first pull)."""
    if state.get("watermark") is None:
        return None
    if state.get("cursor_type") != kind.name:
        raise SqlSourceError(f"the feed state holds a {state.get('cursor_type')!r} cursor but the cursor column "
                             f"is now {kind.name!r}; reset the feed's state after checking the column change")
    return kind.load(state["watermark"])


def _check_sqlite_file(url: sa.URL, where: str) -> None:
    """An SQLite URL must name an existing file: SQLite would silently create an empty one."""
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database not in ("", ":memory:") and not database.startswith("file:") \
            and not Path(database).is_file():
        raise SqlSourceError(f"SQLite database file {database!r} does not exist ({where}); fix the feed's URL or "
                             "connection")
