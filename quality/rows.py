"""The shape of quarantined rows as Parquet, shared by the check that writes them and their readers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REASON_TYPE = pa.struct([("code", pa.string()), ("field", pa.string()), ("message", pa.string())])
QUARANTINE_SCHEMA = pa.schema([("_line", pa.int64()), ("key", pa.string()), ("reasons", pa.list_(REASON_TYPE)),
                               ("raw", pa.string())])


def read_quarantined(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """A quarantined.parquet as QUARANTINE_SCHEMA says (DuckDB, which writes it, names a list's items
    otherwise)."""
    table = pq.read_table(path, columns=list(columns) if columns is not None else None)
    wanted = pa.schema([QUARANTINE_SCHEMA.field(c) for c in table.column_names])
    return table if table.schema == wanted else table.cast(wanted)
