"""Excel workbooks → record batches of text columns plus `_line`: the first (or named) sheet, its first
row the header, values as text. openpyxl's read-only mode streams the sheet's rows, so memory grows
with the batch, never with the sheet; the archive's declared sizes are checked before anything is
inflated (a zip bomb costs no more than a workbook at the limits)."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from connectors.parse_batches import Source, collect, empty_batch, open_source
from connectors.parse_limits import (
    PULL_LIMITS,
    SPLIT_HINT,
    ParseLimits,
    PayloadTooLargeError,
    UnreadablePayloadError,
    too_many_columns,
    too_many_rows,
)
from schemas.contract import LINE_COLUMN
from schemas.messages import HEADER_MISSING, header_looks_missing, shown_name

BATCH_ROWS = 64 * 1024  # records per batch
_CORRUPT = (zipfile.BadZipFile, OSError, ValueError, TypeError, KeyError)  # a corrupt or lying member


def _text(value: Any) -> str | None:
    """A spreadsheet value as the text a department meant (dates ISO, nested as JSON)."""
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


def _column_letter(index: int) -> str:
    """Excel's name of a 1-based column (1 → A, 27 → AA)."""
    letters = ""
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _check_zip(source: Source, name: str, limits: ParseLimits) -> None:
    """Refuse a workbook whose archive declares more members or inflated bytes than the limits. What
    zipfile inflates never exceeds a member's declared size (it stops there and fails the CRC check,
    which the caller reports as unreadable), so the declared sizes bound the work. Only the archive's
    central directory is read."""
    try:
        with open_source(source) as stream:
            members = zipfile.ZipFile(stream).infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise UnreadablePayloadError(f"{name}: not a readable XLSX workbook (not a zip archive); "
                                     "save it again as .xlsx") from None
    if len(members) > limits.zip_members:
        raise PayloadTooLargeError(f"{name}: the workbook has more than {limits.zip_members} members, the limit "
                                   f"for one file; save only the sheet to send in a workbook of its own")
    if sum(m.file_size for m in members) > limits.uncompressed_bytes:
        raise PayloadTooLargeError(f"{name}: the workbook inflates to more than {limits.uncompressed_bytes} bytes, "
                                   f"the limit for one file; {SPLIT_HINT}")


def _header(rows: Iterator[tuple[Any, ...]], name: str, limits: ParseLimits) -> list[str]:
    first = next(rows, ())
    if len(first) > limits.columns:
        raise too_many_columns(name, "row 1 has", limits)
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


def _values(row: tuple[Any, ...], number: int, width: int, name: str, limits: ParseLimits) -> list[str | None]:
    """A sheet row's values under the header, as text; refused if too wide or with a value past the header."""
    if len(row) > limits.columns:
        raise too_many_columns(name, f"row {number} has", limits)
    past = next((i for i in range(width, len(row)) if _text(row[i]) is not None), None)
    if past is not None:
        raise UnreadablePayloadError(
            f"{name}: row {number}, column {_column_letter(past + 1)} has a value but the header names only "
            f"{width} columns (A to {_column_letter(width)}); name that column in the first row, or delete "
            "the cell, and resend")
    values = [_text(v) for v in row[:width]]
    return values + [None] * (width - len(values))


def _batch(columns: list[list[str | None]], schema: pa.Schema, first: int) -> pa.RecordBatch:
    lines = pa.array(range(first, first + len(columns[0])), pa.int64())
    return pa.RecordBatch.from_arrays([*(pa.array(c, pa.string()) for c in columns), lines], schema=schema)


def _row_batches(rows: Iterator[tuple[Any, ...]], header: list[str], name: str,
                 limits: ParseLimits) -> Iterator[pa.RecordBatch]:
    """The data rows below the header in batches of BATCH_ROWS records, counted as they are read (empty
    sheet rows too: they cost work); at least one (empty) batch."""
    schema = pa.schema([*((h, pa.string()) for h in header), (LINE_COLUMN, pa.int64())])
    columns: list[list[str | None]] = [[] for _ in header]
    done = 0
    for number, row in enumerate(rows, start=2):
        if number > limits.rows + 1:
            raise too_many_rows(name, limits)
        values = _values(row, number, len(header), name, limits)
        if all(v is None for v in values):
            continue  # Excel keeps formatted empty rows
        for column, v in zip(columns, values, strict=True):
            column.append(v)
        if len(columns[0]) == BATCH_ROWS:
            yield _batch(columns, schema, done + 1)
            done += BATCH_ROWS
            columns = [[] for _ in header]
    if columns[0] or not done:
        yield _batch(columns, schema, done + 1) if columns[0] else empty_batch(schema)


def xlsx_batches(source: Source, name: str, sheet: str | None = None,
                 limits: ParseLimits = PULL_LIMITS) -> Iterator[pa.RecordBatch]:
    """An Excel workbook's first (or named) sheet → batches of text columns plus `_line`. File drops and
    pushes read the first sheet; a department keeps one table per workbook. A value right of the header
    is refused (it would be dropped); the limits are checked as the rows are read."""
    import openpyxl  # only when a workbook arrives
    from openpyxl.utils.exceptions import InvalidFileException

    _check_zip(source, name, limits)
    stream = open_source(source)
    try:
        book = openpyxl.load_workbook(stream, read_only=True, data_only=True)
    except (InvalidFileException, *_CORRUPT) as err:
        stream.close()
        raise UnreadablePayloadError(f"{name}: not a readable XLSX workbook ({type(err).__name__}); "
                                     "save it again as .xlsx") from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise UnreadablePayloadError(f"{name}: no sheet {sheet!r}; sheets are {book.sheetnames}")
        worksheet = book[sheet] if sheet else book.worksheets[0]
        # the declared dimension would pad every row to it (a tiny file may claim A1:XFD1048576)
        worksheet.reset_dimensions()
        rows = worksheet.iter_rows(values_only=True)
        yield from _row_batches(rows, _header(rows, name, limits), name, limits)
    except _CORRUPT as err:
        raise UnreadablePayloadError(f"{name}: not a readable XLSX workbook ({type(err).__name__} while reading "
                                     "the sheet); save it again as .xlsx") from None
    finally:
        book.close()
        stream.close()


def read_xlsx(data: Source, name: str, sheet: str | None = None, limits: ParseLimits = PULL_LIMITS) -> pa.Table:
    """An Excel workbook's sheet → one table of text columns plus `_line` (`xlsx_batches`, collected)."""
    return collect(xlsx_batches(data, name, sheet, limits))
