"""SQL connector: a department table read through SQLAlchemy into Parquet bytes."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from connectors.payload import Payload
from schemas.errors import TerminalError, TransientError

CHUNK_ROWS = 50_000


@dataclass(frozen=True)
class SqlConnector:
    """Reads a whole table (a snapshot) in chunks; identical content lands once."""

    url: str
    table: str

    def _batches(self, conn: sa.Connection, table: sa.Table) -> Iterator[pa.RecordBatch]:
        order = [c for c in table.primary_key.columns] or list(table.columns)
        result = conn.execution_options(stream_results=True).execute(sa.select(table).order_by(*order))
        names = list(result.keys())
        for rows in result.partitions(CHUNK_ROWS):
            cols: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
            yield pa.RecordBatch.from_arrays(
                [pa.array([None if v is None else str(v) for v in c], pa.string()) for c in cols],
                names=names)

    def fetch(self, state: Mapping[str, Any]) -> Iterator[Payload]:
        """One payload with the table's rows, all values as text as the source gave them."""
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as conn:
                table = sa.Table(self.table, sa.MetaData(), autoload_with=conn)
                batches = list(self._batches(conn, table))
                schema = pa.schema([(c.name, pa.string()) for c in table.columns])
        except sa.exc.NoSuchTableError:
            raise TerminalError(f"table {self.table!r} does not exist at {engine.url!r}; "
                                "fix 'table' in the feed config") from None
        except sa.exc.OperationalError as err:
            raise TransientError(f"cannot read {self.table!r} at {engine.url!r}: {err.orig}") from None
        finally:
            engine.dispose()
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_batches(batches, schema), sink, compression="zstd")
        yield Payload(name=f"{self.table}.parquet", data=sink.getvalue(),
                      media_type="application/vnd.apache.parquet")
