"""Decode a landed payload into an Arrow table of text columns, one row per source record.

Every value stays text here (leading zeros, codes and odd dates survive); typing is the job of
`quality.conform`. A `_line` column numbers the data records from 1 so rejections can point
at the row the department sent.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from schemas.errors import TerminalError
from schemas.media import CSV, JSONL, MEDIA_TYPES, PARQUET, XLSX
from schemas.messages import HEADER_MISSING, header_looks_missing, looks_like_value, shown_name
from schemas.sql import quote_literal

LINE_COLUMN = "_line"
# what a reader may get: a payload's bytes, or the path of the local file holding them (read as a stream)
Source = bytes | Path
_CHUNK = 8 << 20  # bytes decoded at a time when an encoding is detected or a fault is looked for
# pyarrow's streaming CSV reader holds a few dozen blocks in flight (read ahead, parsed, converted):
# its memory grows with the block size, never with the file
CSV_BLOCK_BYTES = 4 << 20
_HEADER_BYTES = CSV_BLOCK_BYTES  # a header longer than a block could not be parsed anyway
# tried in order after a BOM and strict UTF-8; GBK text is a subset of GB18030
_ENCODINGS = ("gb18030",)


class UnreadablePayloadError(TerminalError):
    """A payload cannot be decoded in the encoding or format its feed declares."""


class PayloadTooLargeError(UnreadablePayloadError):
    """A payload holds more rows, or inflates to more bytes, than its reader's limits allow (HTTP 413)."""


class TooManyColumnsError(UnreadablePayloadError):
    """A payload has more columns (or distinct JSON keys) than its reader's limits allow (HTTP 422)."""


@dataclass(frozen=True)
class ParseLimits:
    """How much work one payload may cause before its columns are checked; every reader stops at
    the first limit it reaches, so a hostile file costs no more than a file at the limits."""

    rows: int  # data records
    columns: int  # header columns, distinct JSON keys, or the width of any spreadsheet row
    uncompressed_bytes: int  # XLSX zip members (declared and as inflated), Parquet pages (declared)
    zip_members: int = 1000


# The limits, in one place. A push (gateway and `civicnet push`) is a department's or a community's
# file of at most a few MiB; a pulled file (a drop, an export) may be a whole city's register
# (17.5 million residents at the 2020 census).
PUSH_LIMITS = ParseLimits(rows=1_000_000, columns=200, uncompressed_bytes=256 << 20)
PULL_LIMITS = ParseLimits(rows=25_000_000, columns=500, uncompressed_bytes=4 << 30)
_SPLIT = "split it into smaller files and send each"


def _too_many_rows(name: str, limits: ParseLimits) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"{name}: more than {limits.rows} rows, the limit for one file; {_SPLIT}")


def _too_many_columns(name: str, what: str, limits: ParseLimits) -> TooManyColumnsError:
    return TooManyColumnsError(f"{name}: {what} more than {limits.columns} columns, the limit for one file; "
                               "remove the columns the feed does not map, or split the file by columns")


def column_label(index: int, header: str | None) -> str:
    """A header cell as a message may show it: its name if it looks like one, else only its position
    (a headerless file's first row is data, possibly a citizen ID or a name)."""
    if header is None or not header.strip():
        return f"column {index} (empty)"
    if looks_like_value(header):
        return f"column {index} (its name looks like a value: is the header row missing?)"
    return f"column {index} {header!r}"


class RepeatedKeyError(TerminalError, ValueError):
    """A JSON object names one key twice (json.loads would keep the last value silently)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"a JSON object repeats the key {shown_name(key)}")
        self.key = key


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook` for json.loads: an object, refusing one that repeats a key (RepeatedKeyError)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise RepeatedKeyError(key)
        out[key] = value
    return out


def text_encoding(encoding: str) -> str:
    """The canonical name of a text encoding; refuses unknown codecs and those that are not text
    (rot13, zlib_codec, base64, ...), which Python's codecs also offer under an encoding's name."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise UnreadablePayloadError(f"encoding {encoding[:40]!r} is unknown; use utf-8 or gb18030, or leave it "
                                     "out to have it detected") from None
    if not getattr(info, "_is_text_encoding", True):
        raise UnreadablePayloadError(f"encoding {encoding[:40]!r} is not a text encoding; use utf-8 or gb18030, "
                                     "or leave it out to have it detected")
    return info.name


def detect_encoding(data: bytes) -> str:
    """The encoding of a CSV drop: a BOM says it; else strict UTF-8 if the bytes decode; else GB18030
    (which also reads every GBK file). Raises if nothing decodes, so a file is never misread."""
    return detect_stream_encoding(io.BytesIO(data))


def detect_stream_encoding(stream: IO[bytes]) -> str:
    """`detect_encoding` of a seekable binary stream, read in bounded chunks (left at its start)."""
    head = stream.read(3)
    stream.seek(0)
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    for encoding in ("utf-8", *_ENCODINGS):
        decodes = _decodes(stream, encoding)
        stream.seek(0)
        if decodes:
            return encoding
    raise UnreadablePayloadError(
        "the file is neither UTF-8 nor GB18030/GBK text; resend it in UTF-8, or declare its encoding ('encoding' "
        "in the feed config for a file drop, the X-Encoding header for a push)")


def _decodes(stream: IO[bytes], encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        while chunk := stream.read(_CHUNK):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _table_with_lines(columns: dict[str, list[str | None]]) -> pa.Table:
    """Text columns plus `_line`, numbering records from 1."""
    table = pa.table({c: pa.array(v, pa.string()) for c, v in columns.items()})
    return table.append_column(LINE_COLUMN, pa.array(range(1, table.num_rows + 1), pa.int64()))


def _text(value: Any) -> str | None:
    """A JSON or spreadsheet value as the text a department meant (dates ISO, nested as JSON)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if hasattr(value, "isoformat"):
        text: str = value.isoformat()
        return text.removesuffix("T00:00:00")
    return str(value)


def _pointer(key: str) -> str:
    """A JSON Pointer (RFC 6901) to a top-level key."""
    return "/" + key.replace("~", "~0").replace("/", "~1")


def _json_checks(con: Any, name: str, limits: ParseLimits) -> None:
    """Refuse, before any value is extracted: too many lines, a line that is not one JSON object,
    an object that repeats a key (which value counts would be a guess), too many distinct keys."""
    (rows,), = con.execute("SELECT count(*) FROM j").fetchall()
    if rows > limits.rows:
        raise _too_many_rows(name, limits)
    bad = con.execute("""SELECT n, json_valid(line) FROM j WHERE NOT json_valid(line)
                         OR json_type(line) <> 'OBJECT' ORDER BY n LIMIT 1""").fetchall()
    if bad:
        what = "not a JSON object; send one object per line" if bad[0][1] else "not valid JSON; fix or remove it"
        raise UnreadablePayloadError(f"{name}: line {bad[0][0]} is {what}")
    repeated = con.execute("""SELECT n, k FROM (SELECT n, json_keys(line) AS k FROM j)
                              WHERE len(k) <> len(list_distinct(k)) ORDER BY n LIMIT 1""").fetchall()
    if repeated:
        keys: list[str] = repeated[0][1]
        key = next(k for i, k in enumerate(keys) if k in keys[:i])
        raise UnreadablePayloadError(f"{name}: line {repeated[0][0]} repeats the key {shown_name(key)}; an object "
                                     "may name each key once: keep the right value and resend")
    (distinct,), = con.execute("SELECT count(DISTINCT k) FROM (SELECT unnest(json_keys(line)) AS k FROM j)").fetchall()
    if distinct > limits.columns:
        raise _too_many_columns(name, f"its objects have {distinct} distinct keys,", limits)


def read_jsonl(data: bytes, name: str, limits: ParseLimits = PULL_LIMITS) -> pa.Table:
    """JSON Lines (one object per line, UTF-8) → text columns plus `_line`; blank lines are skipped,
    a line that is not an object is refused with its line number. Columns are the union of keys in
    order of first appearance; values are the text as sent (numbers as written, true/false, nested
    values as JSON, null and "" as null). DuckDB's JSON functions do the work, not a Python loop;
    the limits are checked before a single value is extracted."""
    import duckdb  # one connection per payload: JSON parsing in C++

    lines = pa.array(data.split(b"\n"), pa.binary())
    try:
        text = lines.cast(pa.string())
    except pa.ArrowInvalid:
        raise UnreadablePayloadError(f"{name}: not UTF-8 text; send JSON Lines in UTF-8") from None
    con = duckdb.connect()
    try:
        con.register("src", pa.Table.from_arrays([pa.array(range(1, len(text) + 1), pa.int64()), text],
                                                 names=["n", "line"]))
        con.execute("CREATE TEMP TABLE j AS SELECT n, line FROM src WHERE trim(line) <> ''")
        _json_checks(con, name, limits)
        keys = [k for (k,) in con.execute("""SELECT k FROM (SELECT unnest(json_keys(line)) AS k,
                                                 n * 100000 + unnest(range(len(json_keys(line)))) AS pos FROM j)
                                             GROUP BY k ORDER BY min(pos)""").fetchall()]
        values = ", ".join(f"nullif(json_extract_string(line, {quote_literal(_pointer(k))}), '') AS c{i}"
                           for i, k in enumerate(keys))
        table = con.sql(f"SELECT {values + ', ' if keys else ''}row_number() OVER (ORDER BY n) AS _line "
                        "FROM j ORDER BY n").to_arrow_table()
    finally:
        con.close()
    return table.rename_columns([*keys, LINE_COLUMN]).cast(
        pa.schema([*((k, pa.string()) for k in keys), (LINE_COLUMN, pa.int64())]))


def _column_letter(index: int) -> str:
    """Excel's name of a 1-based column (1 → A, 27 → AA)."""
    letters = ""
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _check_zip(data: bytes, name: str, limits: ParseLimits) -> None:
    """Refuse a workbook whose archive declares more members or inflated bytes than the limits. What
    zipfile inflates never exceeds a member's declared size (it stops there and fails the CRC check,
    which the caller reports as unreadable), so the declared sizes bound the work."""
    try:
        members = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise UnreadablePayloadError(f"{name}: not a readable XLSX workbook (not a zip archive); "
                                     "save it again as .xlsx") from None
    if len(members) > limits.zip_members:
        raise PayloadTooLargeError(f"{name}: the workbook has more than {limits.zip_members} members, the limit "
                                   f"for one file; save only the sheet to send in a workbook of its own")
    if sum(m.file_size for m in members) > limits.uncompressed_bytes:
        raise PayloadTooLargeError(f"{name}: the workbook inflates to more than {limits.uncompressed_bytes} bytes, "
                                   f"the limit for one file; {_SPLIT}")


def _xlsx_header(rows: Iterator[tuple[Any, ...]], name: str, limits: ParseLimits) -> list[str]:
    first = next(rows, ())
    if len(first) > limits.columns:
        raise _too_many_columns(name, "row 1 has", limits)
    header = [_text(v) for v in first]
    while header and header[-1] is None:
        header.pop()
    if header_looks_missing(header):
        raise UnreadablePayloadError(f"{name}: {HEADER_MISSING}")
    if not header:
        raise UnreadablePayloadError(f"{name}: the first row must name every column once; it is empty")
    for i, h in enumerate(header):
        if h is None or header.index(h) != i:
            problem = "is empty" if h is None else f"{shown_name(h)} repeats an earlier column's name"
            raise UnreadablePayloadError(f"{name}: the first row must name every column once; column "
                                         f"{_column_letter(i + 1)} {problem}")
    return [str(h) for h in header]


def _xlsx_columns(rows: Iterator[tuple[Any, ...]], header: list[str], name: str,
                  limits: ParseLimits) -> dict[str, list[str | None]]:
    """The data rows below the header, counted as they are read (empty sheet rows too: they cost work)."""
    columns: dict[str, list[str | None]] = {h: [] for h in header}
    width = len(header)
    for number, row in enumerate(rows, start=2):
        if number > limits.rows + 1:
            raise _too_many_rows(name, limits)
        if len(row) > limits.columns:
            raise _too_many_columns(name, f"row {number} has", limits)
        past = next((i for i in range(width, len(row)) if _text(row[i]) is not None), None)
        if past is not None:
            raise UnreadablePayloadError(
                f"{name}: row {number}, column {_column_letter(past + 1)} has a value but the header names only "
                f"{width} columns (A to {_column_letter(width)}); name that column in the first row, or delete "
                "the cell, and resend")
        values = [_text(v) for v in row[:width]]
        if all(v is None for v in values):
            continue  # Excel keeps formatted empty rows
        values += [None] * (width - len(values))
        for h, v in zip(header, values, strict=True):
            columns[h].append(v)
    return columns


def read_xlsx(data: bytes, name: str, sheet: str | None = None, limits: ParseLimits = PULL_LIMITS) -> pa.Table:
    """An Excel workbook's first (or named) sheet: first row the header, values as text. File drops and
    pushes read the first sheet; a department keeps one table per workbook. A value right of the header
    is refused (it would be dropped); the limits are checked as the rows are read."""
    import openpyxl  # only when a workbook arrives
    from openpyxl.utils.exceptions import InvalidFileException

    _check_zip(data, name, limits)
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError) as err:
        raise UnreadablePayloadError(f"{name}: not a readable XLSX workbook ({type(err).__name__}); "
                                     "save it again as .xlsx") from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise UnreadablePayloadError(f"{name}: no sheet {sheet!r}; sheets are {book.sheetnames}")
        worksheet = book[sheet] if sheet else book.worksheets[0]
        # the declared dimension would pad every row to it (a tiny file may claim A1:XFD1048576)
        worksheet.reset_dimensions()
        rows = worksheet.iter_rows(values_only=True)
        header = _xlsx_header(rows, name, limits)
        columns = _xlsx_columns(rows, header, name, limits)
    except (zipfile.BadZipFile, OSError, ValueError, TypeError, KeyError) as err:  # a corrupt or lying member
        raise UnreadablePayloadError(f"{name}: not a readable XLSX workbook ({type(err).__name__} while reading "
                                     "the sheet); save it again as .xlsx") from None
    finally:
        book.close()
    return _table_with_lines(columns)


def _open(source: Source) -> IO[bytes]:
    return io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")


def _arrow_input(source: Source) -> Any:
    """What pyarrow reads: the buffer (no copy), or the path (read natively, as a stream)."""
    return pa.BufferReader(source) if isinstance(source, bytes) else str(source)


def _csv_header(source: Source, encoding: str, name: str) -> list[str]:
    with _open(source) as stream:
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
        raise _too_many_columns(name, f"its header has {len(header)} columns,", limits)
    if len(set(header)) != len(header) and header_looks_missing(header):
        raise UnreadablePayloadError(f"{name}: {HEADER_MISSING}")
    for i, h in enumerate(header):
        if header.index(h) != i:
            raise UnreadablePayloadError(f"{name}: header repeats a column name: {column_label(i + 1, h)} has the "
                                         f"name of column {header.index(h) + 1}; rename it")


class NotTextError(UnreadablePayloadError):
    """A line of a text payload is not in its declared encoding (where: line and byte, never the bytes)."""

    def __init__(self, line: int, byte: int) -> None:
        super().__init__(f"line {line} (byte {byte}) is not text in the declared encoding")
        self.line, self.byte = line, byte


def _decoded_lines(stream: IO[bytes], codec: str) -> Iterator[str]:
    """The lines of a text stream, decoded one at a time (the line ends are ASCII in every encoding we
    read but UTF-16/32, which are decoded whole); NotTextError says where the first undecodable byte is."""
    if codec.lower().replace("_", "-").startswith(("utf-16", "utf-32")):
        data = stream.read()
        try:
            yield from io.StringIO(data.decode(codec), newline="")
        except UnicodeDecodeError as err:
            raise NotTextError(data[:err.start].count(b"\n") + 1, err.start) from None
        return
    decoder = codecs.getincrementaldecoder(codec)()
    offset = 0
    for number, raw in enumerate(stream, start=1):
        try:
            yield decoder.decode(raw)
        except UnicodeDecodeError as err:
            raise NotTextError(number, offset + err.start) from None
        offset += len(raw)


def _csv_fault(source: Source, codec: str, encoding: str, width: int, name: str) -> UnreadablePayloadError:
    """Why pyarrow could not read a CSV, said by record and byte, never by value (pyarrow's own
    message quotes the offending row, which may hold a citizen ID and a name). Reads the file as a
    stream, twice: first for its encoding, then for its records."""
    prefix = f"{name}: not a readable {encoding} CSV"
    try:
        with _open(source) as stream:
            blank = True
            for line in _decoded_lines(stream, codec):  # every line: the first undecodable one is the fault
                blank = blank and not line.lstrip("\ufeff").strip()
    except NotTextError as bad:
        return UnreadablePayloadError(f"{prefix}: line {bad.line} (byte {bad.byte}) is not {encoding} text; check "
                                      "the file's encoding ('encoding' in the feed config, X-Encoding for a push)")
    if blank:
        return UnreadablePayloadError(f"{prefix}: the file is empty (no header row, no records); send the whole "
                                      "export again")
    with _open(source) as stream:
        records = csv.reader(_decoded_lines(stream, codec))
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


def _with_lines(batch: pa.RecordBatch, first: int) -> pa.RecordBatch:
    """A batch with `_line` appended, numbering its records from `first`."""
    lines = pa.array(range(first, first + batch.num_rows), pa.int64())
    return pa.RecordBatch.from_arrays([*batch.columns, lines], names=[*batch.schema.names, LINE_COLUMN])


def _empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)


def _numbered(batches: Iterable[pa.RecordBatch], schema: pa.Schema, name: str,
              limits: ParseLimits) -> Iterator[pa.RecordBatch]:
    """Batches with `_line`, stopping as soon as the count passes the limit; at least one (empty) batch,
    so a file of no records still says its columns."""
    rows = 0
    for batch in batches:
        if rows + batch.num_rows > limits.rows:
            raise _too_many_rows(name, limits)
        if batch.num_rows:
            yield _with_lines(batch, rows + 1)
        rows += batch.num_rows
    if rows == 0:
        yield _with_lines(_empty_batch(schema), 1)


def csv_batches(source: Source, encoding: str, name: str,
                limits: ParseLimits = PULL_LIMITS) -> Iterator[pa.RecordBatch]:
    """CSV in any Python text codec (GB18030 included) → batches of Arrow text columns plus `_line`, read
    as a stream block by block (pyarrow decodes a non-UTF-8 codec on the way), within `limits`."""
    encoding = text_encoding(encoding) if encoding.lower().replace("_", "-") not in ("utf-8", "utf8") else encoding
    header = _csv_header(source, encoding, name)
    _check_csv_header(header, name, limits)
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig") else encoding
    try:
        with pacsv.open_csv(_arrow_input(source), **_csv_options(header, codec)) as reader:
            yield from _numbered(reader, reader.schema, name, limits)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        raise _csv_fault(source, codec, encoding, len(header), name) from None


def read_csv(data: Source, encoding: str, name: str, limits: ParseLimits = PULL_LIMITS) -> pa.Table:
    """CSV bytes in any Python text codec (GB18030 included) → Arrow text columns plus `_line`."""
    return pa.Table.from_batches(list(csv_batches(data, encoding, name, limits)))


def parquet_batches(source: Source, name: str, limits: ParseLimits = PULL_LIMITS) -> Iterator[pa.RecordBatch]:
    """Parquet (as the SQL connector lands it, or a dropped file) → batches of text columns plus `_line`,
    row group by row group; rows, columns and inflated size are checked from the footer before any page
    is read."""
    try:
        file = pq.ParquetFile(_arrow_input(source))
        meta = file.metadata
        if meta.num_rows > limits.rows:
            raise _too_many_rows(name, limits)
        if meta.num_columns > limits.columns:
            raise _too_many_columns(name, f"it has {meta.num_columns} columns,", limits)
        if sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) > limits.uncompressed_bytes:
            raise PayloadTooLargeError(f"{name}: the file inflates to more than {limits.uncompressed_bytes} bytes, "
                                       f"the limit for one file; {_SPLIT}")
        text = pa.schema([(f.name, pa.string()) for f in file.schema_arrow])
        batches = file.iter_batches(batch_size=128 * 1024)
        first = next(batches, None)
    except (pa.ArrowInvalid, OSError) as err:
        raise UnreadablePayloadError(f"{name}: not a readable Parquet file ({type(err).__name__}); "
                                     "write it again") from None
    yield from _numbered((b.cast(text) for b in _read_on(first, batches, name)), text, name, limits)


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
    return pa.Table.from_batches(list(parquet_batches(data, name, limits)))


def _table_batches(table: pa.Table) -> list[pa.RecordBatch]:
    return table.to_batches() or [_empty_batch(table.schema)]


def payload_batches(source: Source, media_type: str, encoding: str | None, name: str,
                    limits: ParseLimits = PULL_LIMITS) -> Iterator[pa.RecordBatch]:
    """Decode a payload by its media type, within `limits`, as record batches of one schema (text
    columns plus `_line`; at least one batch). CSV and Parquet are read as streams, in bounded memory
    whatever their size; JSON Lines and workbooks (API pages, pushes, small drops) are read whole."""
    if media_type == CSV:
        if encoding is None:
            with _open(source) as stream:
                encoding = detect_stream_encoding(stream)
        return csv_batches(source, encoding, name, limits)
    if media_type == PARQUET:
        return parquet_batches(source, name, limits)
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if media_type == JSONL:
        return iter(_table_batches(read_jsonl(data, name, limits)))
    if media_type == XLSX:
        return iter(_table_batches(read_xlsx(data, name, limits=limits)))
    raise UnreadablePayloadError(f"{name}: media type {media_type!r} has no reader; "
                                 f"send one of {sorted(MEDIA_TYPES)}")


def read_payload(data: Source, media_type: str, encoding: str | None, name: str,
                 limits: ParseLimits = PULL_LIMITS) -> pa.Table:
    """Decode a payload by its media type, within `limits` (PUSH_LIMITS for what the gateway receives)."""
    return pa.Table.from_batches(list(payload_batches(data, media_type, encoding, name, limits)))
