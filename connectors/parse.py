"""Decode a landed payload into an Arrow table of text columns, one row per source record.

Every value stays text here (leading zeros, codes and odd dates survive); typing is the job of
`quality.conform`. A `_line` column numbers the data records from 1 so rejections can point
at the row the department sent.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from schemas.errors import TerminalError

LINE_COLUMN = "_line"
CSV, PARQUET, JSONL = "text/csv", "application/vnd.apache.parquet", "application/x-ndjson"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# file extension → media type, for file drops and pushes
MEDIA_TYPES = {"csv": CSV, "parquet": PARQUET, "jsonl": JSONL, "ndjson": JSONL, "xlsx": XLSX}
EXTENSIONS = {CSV: "csv", PARQUET: "parquet", JSONL: "jsonl", XLSX: "xlsx"}
# tried in order after a BOM and strict UTF-8; GBK text is a subset of GB18030
_ENCODINGS = ("gb18030",)


class UnreadablePayloadError(TerminalError):
    """A payload cannot be decoded in the encoding or format its feed declares."""


def detect_encoding(data: bytes) -> str:
    """The encoding of a CSV drop: a BOM says it; else strict UTF-8 if the bytes decode; else GB18030
    (which also reads every GBK file). Raises if nothing decodes, so a file is never misread."""
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    for encoding in ("utf-8", *_ENCODINGS):
        try:
            data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return encoding
    raise UnreadablePayloadError(
        "the file is neither UTF-8 nor GB18030/GBK text; resend it in UTF-8, or declare its encoding ('encoding' "
        "in the feed config for a file drop, the X-Encoding header for a push)")


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


def read_jsonl(data: bytes, name: str) -> pa.Table:
    """JSON Lines (one object per line, UTF-8) → text columns plus `_line`; blank lines are skipped,
    a line that is not an object is refused with its line number. Columns are the union of keys in
    order of first appearance; values are the text as sent (numbers as written, true/false, nested
    values as JSON, null and "" as null). DuckDB's JSON functions do the work, not a Python loop."""
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
        bad = con.execute("""SELECT n, json_valid(line) FROM j WHERE NOT json_valid(line)
                             OR json_type(line) <> 'OBJECT' ORDER BY n LIMIT 1""").fetchall()
        if bad:
            what = "not a JSON object; send one object per line" if bad[0][1] else "not valid JSON; fix or remove it"
            raise UnreadablePayloadError(f"{name}: line {bad[0][0]} is {what}")
        keys = [k for (k,) in con.execute("""SELECT k FROM (SELECT unnest(json_keys(line)) AS k,
                                                 n * 100000 + unnest(range(len(json_keys(line)))) AS pos FROM j)
                                             GROUP BY k ORDER BY min(pos)""").fetchall()]
        values = ", ".join(f"nullif(json_extract_string(line, '{_pointer(k).replace(chr(39), chr(39) * 2)}'), '')"
                           f" AS c{i}" for i, k in enumerate(keys))
        table = con.sql(f"SELECT {values + ', ' if keys else ''}row_number() OVER (ORDER BY n) AS _line "
                        "FROM j ORDER BY n").to_arrow_table()
    finally:
        con.close()
    return table.rename_columns([*keys, LINE_COLUMN]).cast(
        pa.schema([*((k, pa.string()) for k in keys), (LINE_COLUMN, pa.int64())]))


def read_xlsx(data: bytes, name: str, sheet: str | None = None) -> pa.Table:
    """An Excel workbook's first (or named) sheet: first row the header, values as text. File drops and
    pushes read the first sheet; a department keeps one table per workbook."""
    import openpyxl  # only when a workbook arrives
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as err:
        raise UnreadablePayloadError(f"{name}: not a readable XLSX workbook ({err}); save it again as .xlsx") from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise UnreadablePayloadError(f"{name}: no sheet {sheet!r}; sheets are {book.sheetnames}")
        rows = book[sheet].iter_rows(values_only=True) if sheet else book.worksheets[0].iter_rows(values_only=True)
        header = [_text(v) for v in next(rows, ())]
        while header and header[-1] is None:
            header.pop()
        if not header or None in header or len(set(header)) != len(header):
            raise UnreadablePayloadError(f"{name}: the first row must name every column once; it is {header}")
        columns: dict[str, list[str | None]] = {str(h): [] for h in header}
        for row in rows:
            values = [_text(v) for v in row[: len(header)]]
            if all(v is None for v in values):
                continue  # Excel keeps formatted empty rows
            values += [None] * (len(header) - len(values))
            for h, v in zip(header, values, strict=True):
                columns[str(h)].append(v)
    finally:
        book.close()
    return _table_with_lines(columns)


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
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig") else encoding
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
    """Parquet bytes (as the SQL connector lands them, or a dropped file) → text columns plus `_line`."""
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as err:
        raise UnreadablePayloadError(f"{name}: not a readable Parquet file ({err}); write it again") from None
    table = table.cast(pa.schema([(f.name, pa.string()) for f in table.schema]))
    return table.append_column(LINE_COLUMN, pa.array(range(1, table.num_rows + 1), pa.int64()))


def read_payload(data: bytes, media_type: str, encoding: str | None, name: str) -> pa.Table:
    """Decode a payload by its media type."""
    if media_type == CSV:
        return read_csv(data, encoding or detect_encoding(data), name)
    if media_type == PARQUET:
        return read_parquet(data, name)
    if media_type == JSONL:
        return read_jsonl(data, name)
    if media_type == XLSX:
        return read_xlsx(data, name)
    raise UnreadablePayloadError(f"{name}: media type {media_type!r} has no reader; "
                                 f"send one of {sorted(MEDIA_TYPES)}")
