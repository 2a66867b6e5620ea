"""What every reader of `connectors.parse` takes and gives: a `Source` (a payload's bytes, or the path
of the local file holding them, read as a stream) in, record batches of text columns plus `_line` out,
the records numbered from 1 across the whole file so a rejection points at the row the department sent.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from connectors.parse_limits import ParseLimits, too_many_rows
from schemas.contract import LINE_COLUMN

# what a reader may get: a payload's bytes, or the path of the local file holding them (read as a stream)
Source = bytes | Path


def open_source(source: Source) -> IO[bytes]:
    """The source as a binary stream (the caller closes it)."""
    return io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")


def arrow_input(source: Source) -> Any:
    """What pyarrow reads: the buffer (no copy), or the path (read natively, as a stream)."""
    return pa.BufferReader(source) if isinstance(source, bytes) else str(source)


def with_lines(batch: pa.RecordBatch, first: int) -> pa.RecordBatch:
    """A batch with `_line` appended, numbering its records from `first`."""
    lines = pa.array(range(first, first + batch.num_rows), pa.int64())
    return pa.RecordBatch.from_arrays([*batch.columns, lines], names=[*batch.schema.names, LINE_COLUMN])


def empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    """A batch of no rows with the given columns."""
    return pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)


def numbered(batches: Iterable[pa.RecordBatch], schema: pa.Schema, name: str,
             limits: ParseLimits) -> Iterator[pa.RecordBatch]:
    """Batches with `_line`, stopping as soon as the count passes the limit; at least one (empty) batch,
    so a file of no records still says its columns."""
    rows = 0
    for batch in batches:
        if rows + batch.num_rows > limits.rows:
            raise too_many_rows(name, limits)
        if batch.num_rows:
            yield with_lines(batch, rows + 1)
        rows += batch.num_rows
    if rows == 0:
        yield with_lines(empty_batch(schema), 1)


def collect(batches: Iterable[pa.RecordBatch]) -> pa.Table:
    """The batches of one reader as one table (for callers that want the whole, small, payload)."""
    return pa.Table.from_batches(list(batches))
