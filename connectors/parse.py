"""Decode a landed payload into Arrow record batches of text columns, one row per source record: the
entry points (`payload_batches`, `read_payload`) and the readers of CSV and Parquet.

Every value stays text here (leading zeros, codes and odd dates survive); typing is the job of
`quality.conform`. A `_line` column numbers the data records from 1 so rejections can point
at the row the department sent. Every media type is read as a stream, in bounded memory whatever
the file's size: CSV block by block, Parquet row group by row group, JSON Lines
(`connectors.parse_jsonl`) in blocks of whole lines, workbooks (`connectors.parse_xlsx`) row by row.
The limits and the errors of every reader live in `connectors.parse_limits`, encodings in
`connectors.parse_encoding`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from connectors.parse_batches import Source, arrow_input, collect, numbered, open_source
from connectors.parse_encoding import decoded_lines, detect_stream_encoding, text_encoding
from connectors.parse_jsonl import jsonl_batches
from connectors.parse_limits import (
    PULL_LIMITS,
    SPLIT_HINT,
    NotTextError,
    ParseLimits,
    PayloadTooLargeError,
    UnreadablePayloadError,
    too_many_columns,
    too_many_rows,
)
from connectors.parse_xlsx import xlsx_batches
from schemas.media import CSV, JSONL, MEDIA_TYPES, PARQUET, XLSX
from schemas.messages import HEADER_MISSING, header_looks_missing, looks_like_value

# pyarrow's streaming CSV reader holds a few dozen blocks in flight (read ahead, parsed, converted):
# its memory grows with the block size, never with the file
CSV_BLOCK_BYTES = 4 << 20
_HEADER_BYTES = CSV_BLOCK_BYTES  # a header longer than a block could not be parsed anyway


def column_label(index: int, header: str | None) -> str:
    """A header cell as a message may show it: its name if it looks like one, else only its position
    (a headerless file's first row is data, possibly a citizen ID or a name)."""
    if header is None or not header.strip():
        return f"column {index} (empty)"
    if looks_like_value(header):
        return f"column {index} (its name looks like a value: is the header row missing?)"
    return f"column {index} {header!r}"


def _csv_header(source: Source, encoding: str, name: str) -> list[str]:
    with open_source(source) as stream:
        first = stream.readline(_HEADER_BYTES).rstrip(b"\n")
    try:
        text = first.decode(encoding).lstrip("\ufeff").rstrip("\r")
    except UnicodeDecodeError as err:
        raise UnreadablePayloadError(
            f"{name}: header is not valid {encoding} ({err.reason} at byte {err.start}); "
            "fix 'encoding' in the feed config or resend the file in that encoding") from None
    return next(csv.reader([text]), [])


def _check_csv_header(header: list[str], name: str, limits: ParseLimits) -> None:
    if len(header) > limits.columns:
        raise too_many_columns(name, f"its header has {len(header)} columns,", limits)
    if len(set(header)) != len(header) and header_looks_missing(header):
        raise UnreadablePayloadError(f"{name}: {HEADER_MISSING}")
    for i, h in enumerate(header):
        if header.index(h) != i:
            raise UnreadablePayloadError(f"{name}: header repeats a column name: {column_label(i + 1, h)} has the "
                                         f"name of column {header.index(h) + 1}; rename it")


def _csv_fault(source: Source, codec: str, encoding: str, width: int, name: str) -> UnreadablePayloadError:
    """Why pyarrow could not read a CSV, said by record and byte, never by value (pyarrow's own
    message quotes the offending row, which may hold a citizen ID and a name). Reads the file as a
    stream, twice: first for its encoding, then for its records."""
    prefix = f"{name}: not a readable {encoding} CSV"
    try:
        with open_source(source) as stream:
            blank = True
            for line in decoded_lines(stream, codec):  # every line: the first undecodable one is the fault
                blank = blank and not line.lstrip("\ufeff").strip()
    except NotTextError as bad:
        return UnreadablePayloadError(f"{prefix}: line {bad.line} (byte {bad.byte}) is not {encoding} text; check "
                                      "the file's encoding ('encoding' in the feed config, X-Encoding for a push)")
    if blank:
        return UnreadablePayloadError(f"{prefix}: the file is empty (no header row, no records); send the whole "
                                      "export again")
    with open_source(source) as stream:
        records = csv.reader(decoded_lines(stream, codec))
        next(records, None)
        number = 0
        for record in records:
            if not record:
                continue  # pyarrow skips empty lines too
            number += 1
            if len(record) != width:
                return UnreadablePayloadError(
                    f"{prefix}: record {number} (after the header) has {len(record)} fields but the header has "
                    f"{width}; check its quoting (a value with a comma, quote or line break must be in double "
                    "quotes)")
    return UnreadablePayloadError(f"{prefix}: its quoting or structure is broken; check the file's encoding and "
                                  "quoting")


def _csv_options(header: list[str], codec: str) -> dict[str, Any]:
    return {"read_options": pacsv.ReadOptions(encoding=codec, block_size=CSV_BLOCK_BYTES),
            "convert_options": pacsv.ConvertOptions(column_types={c: pa.string() for c in header},
                                                    strings_can_be_null=True, null_values=[""],
                                                    quoted_strings_can_be_null=True)}


def csv_batches(source: Source, encoding: str, name: str,
                limits: ParseLimits = PULL_LIMITS) -> Iterator[pa.RecordBatch]:
    """CSV in any Python text codec (GB18030 included) → batches of Arrow text columns plus `_line`, read
    as a stream block by block (pyarrow decodes a non-UTF-8 codec on the way), within `limits`."""
    encoding = text_encoding(encoding) if encoding.lower().replace("_", "-") not in ("utf-8", "utf8") else encoding
    header = _csv_header(source, encoding, name)
    _check_csv_header(header, name, limits)
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig") else encoding
    try:
        with pacsv.open_csv(arrow_input(source), **_csv_options(header, codec)) as reader:
            yield from numbered(reader, reader.schema, name, limits)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        raise _csv_fault(source, codec, encoding, len(header), name) from None


def read_csv(data: Source, encoding: str, name: str, limits: ParseLimits = PULL_LIMITS) -> pa.Table:
    """CSV bytes in any Python text codec (GB18030 included) → Arrow text columns plus `_line`."""
    return collect(csv_batches(data, encoding, name, limits))


def parquet_batches(source: Source, name: str, limits: ParseLimits = PULL_LIMITS) -> Iterator[pa.RecordBatch]:
    """Parquet (as the SQL connector lands it, or a dropped file) → batches of text columns plus `_line`,
    row group by row group; rows, columns and inflated size are checked from the footer before any page
    is read."""
    try:
        file = pq.ParquetFile(arrow_input(source))
        meta = file.metadata
        if meta.num_rows > limits.rows:
            raise too_many_rows(name, limits)
        if meta.num_columns > limits.columns:
            raise too_many_columns(name, f"it has {meta.num_columns} columns,", limits)
        if sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) > limits.uncompressed_bytes:
            raise PayloadTooLargeError(f"{name}: the file inflates to more than {limits.uncompressed_bytes} bytes, "
                                       f"the limit for one file; {SPLIT_HINT}")
        text = pa.schema([(f.name, pa.string()) for f in file.schema_arrow])
        batches = file.iter_batches(batch_size=128 * 1024)
        first = next(batches, None)
    except (pa.ArrowInvalid, OSError) as err:
        raise UnreadablePayloadError(f"{name}: not a readable Parquet file ({type(err).__name__}); "
                                     "write it again") from None
    yield from numbered((b.cast(text) for b in _read_on(first, batches, name)), text, name, limits)


def _read_on(first: pa.RecordBatch | None, batches: Iterator[pa.RecordBatch], name: str) -> Iterator[pa.RecordBatch]:
    if first is None:
        return
    yield first
    try:
        yield from batches
    except (pa.ArrowInvalid, OSError) as err:
        raise UnreadablePayloadError(f"{name}: not a readable Parquet file ({type(err).__name__}); "
                                     "write it again") from None


def read_parquet(data: Source, name: str, limits: ParseLimits = PULL_LIMITS) -> pa.Table:
    """Parquet bytes (as the SQL connector lands them, or a dropped file) → text columns plus `_line`;
    rows, columns and inflated size are checked from the footer before any page is read."""
    return collect(parquet_batches(data, name, limits))


def payload_batches(source: Source, media_type: str, encoding: str | None, name: str,
                    limits: ParseLimits = PULL_LIMITS) -> Iterator[pa.RecordBatch]:
    """Decode a payload by its media type, within `limits`, as record batches of one schema (text
    columns plus `_line`; at least one batch), read as a stream in bounded memory whatever the size. A
    fault may surface only as the batches are taken: iterate inside the `except` that handles it."""
    if media_type == CSV:
        if encoding is None:
            with open_source(source) as stream:
                encoding = detect_stream_encoding(stream)
        return csv_batches(source, encoding, name, limits)
    if media_type == PARQUET:
        return parquet_batches(source, name, limits)
    if media_type == JSONL:
        return jsonl_batches(source, name, limits)
    if media_type == XLSX:
        return xlsx_batches(source, name, limits=limits)
    raise UnreadablePayloadError(f"{name}: media type {media_type!r} has no reader; "
                                 f"send one of {sorted(MEDIA_TYPES)}")


def read_payload(data: Source, media_type: str, encoding: str | None, name: str,
                 limits: ParseLimits = PULL_LIMITS) -> pa.Table:
    """Decode a payload by its media type, within `limits` (PUSH_LIMITS for what the gateway receives)."""
    return collect(payload_batches(data, media_type, encoding, name, limits))
