"""Decode a landed payload into an Arrow table of text columns, one row per source record.

Every value stays text here (leading zeros, codes and odd dates survive); typing is the job of
`quality.conform`. A `_line` column numbers the data records from 1 so rejections can point
at the row the department sent.
"""

from __future__ import annotations

import csv
import io

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from schemas.errors import TerminalError

LINE_COLUMN = "_line"


class UnreadablePayloadError(TerminalError):
    """A payload cannot be decoded in the encoding or format its feed declares."""


def _csv_header(data: bytes, encoding: str, name: str) -> list[str]:
    first = data.split(b"\n", 1)[0]
    try:
        text = first.decode(encoding).lstrip("\ufeff").rstrip("\r")
    except UnicodeDecodeError as err:
        raise UnreadablePayloadError(
            f"{name}: header is not valid {encoding} ({err.reason} at byte {err.start}); "
            "fix 'encoding' in the feed config or resend the file in that encoding") from None
    return next(csv.reader([text]))


def read_csv(data: bytes, encoding: str, name: str) -> pa.Table:
    """CSV bytes in any Python codec (GB18030 included) → Arrow text columns plus `_line`."""
    header = _csv_header(data, encoding, name)
    if len(set(header)) != len(header):
        raise UnreadablePayloadError(f"{name}: header repeats a column name: {header}; rename it")
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(encoding=codec, block_size=16 << 20),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in header}, strings_can_be_null=True,
                null_values=[""], quoted_strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as err:
        raise UnreadablePayloadError(
            f"{name}: not a readable {encoding} CSV ({err}); check the file's encoding and quoting") from None
    return table.append_column(LINE_COLUMN, pa.array(range(1, table.num_rows + 1), pa.int64()))


def read_parquet(data: bytes, name: str) -> pa.Table:
    """Parquet bytes (as the SQL connector lands them) → Arrow text columns plus `_line`."""
    table = pq.read_table(io.BytesIO(data))
    table = table.cast(pa.schema([(f.name, pa.string()) for f in table.schema]))
    return table.append_column(LINE_COLUMN, pa.array(range(1, table.num_rows + 1), pa.int64()))


def read_payload(data: bytes, media_type: str, encoding: str | None, name: str) -> pa.Table:
    """Decode a payload by its media type."""
    if media_type == "text/csv":
        return read_csv(data, encoding or "utf-8", name)
    if media_type == "application/vnd.apache.parquet":
        return read_parquet(data, name)
    raise UnreadablePayloadError(f"{name}: media type {media_type!r} has no reader; use CSV or Parquet")
