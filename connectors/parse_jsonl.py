"""JSON Lines (one object per line, UTF-8) → record batches of text columns plus `_line`, read as a
stream in blocks of whole lines, so memory grows with the block size, never with the file.

Columns are the union of keys in order of first appearance, so the whole file is checked (rows, JSON,
repeated keys, distinct keys) block by block before any value is extracted; a file of one block is
extracted from what the check loaded, a longer one is read a second time, block by block. DuckDB's
JSON functions do the work, not a Python loop over records.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import closing
from typing import Any

import pyarrow as pa

from connectors.parse_batches import Source, collect, empty_batch, open_source
from connectors.parse_limits import (
    PULL_LIMITS,
    ParseLimits,
    UnreadablePayloadError,
    too_many_columns,
    too_many_rows,
)
from schemas.contract import LINE_COLUMN
from schemas.messages import shown_name
from schemas.sql import quote_literal

# bytes read at a time; a block holds the whole lines they end (a line longer than this, a longer block)
BLOCK_BYTES = 4 << 20


def _blocks(source: Source) -> Generator[tuple[int, bytes, bool]]:
    """The source in runs of whole lines of about BLOCK_BYTES: each with the number of its first line
    and whether it is the last run (a line end is one byte in UTF-8, never inside a character)."""
    pending: tuple[int, bytes] | None = None
    line, buffer = 1, bytearray()
    with open_source(source) as stream:
        while chunk := stream.read(BLOCK_BYTES):
            buffer += chunk
            end = chunk.rfind(b"\n")
            if end < 0:
                continue  # no line ends in this chunk: the buffer holds part of one long line
            cut = len(buffer) - len(chunk) + end + 1
            if pending is not None:
                yield (*pending, False)
            pending = (line, bytes(buffer[:cut]))
            line += pending[1].count(b"\n")
            del buffer[:cut]
    if buffer:
        if pending is not None:
            yield (*pending, False)
        pending = (line, bytes(buffer))
    if pending is not None:
        yield (*pending, True)


def _load(con: Any, first: int, data: bytes, name: str) -> int:
    """One block as the table `j` (n: line number, line: its text) without blank lines; its rows."""
    lines = pa.array(data.split(b"\n"), pa.binary())
    try:
        text = lines.cast(pa.string())
    except pa.ArrowInvalid:
        raise UnreadablePayloadError(f"{name}: not UTF-8 text; send JSON Lines in UTF-8") from None
    con.register("src", pa.Table.from_arrays([pa.array(range(first, first + len(text)), pa.int64()), text],
                                             names=["n", "line"]))
    # blank: only JSON's whitespace (a CRLF file's blank line is "\r"; trim() alone removes spaces only)
    con.execute("CREATE OR REPLACE TEMP TABLE j AS SELECT n, line FROM src "
                "WHERE trim(line, chr(32) || chr(9) || chr(13)) <> ''")
    con.unregister("src")
    (rows,), = con.execute("SELECT count(*) FROM j").fetchall()
    return int(rows)


def _check_block(con: Any, name: str) -> list[str]:
    """Refuse, before any value is extracted: a line that is not one JSON object, an object that repeats
    a key (which value counts would be a guess); the block's keys in order of first appearance."""
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
    return [k for (k,) in con.execute("""SELECT k FROM (SELECT unnest(json_keys(line)) AS k,
                                             n * 100000 + unnest(range(len(json_keys(line)))) AS pos FROM j)
                                         GROUP BY k ORDER BY min(pos)""").fetchall()]


def _scan(con: Any, source: Source, name: str, limits: ParseLimits) -> tuple[list[str], int]:
    """Check the whole file block by block, stopping at the first block past a limit: its keys in order
    of first appearance, and its number of blocks (the last one is left loaded in `j`)."""
    keys: dict[str, None] = {}
    rows = blocks = 0
    with closing(_blocks(source)) as read:  # a refusal closes the file at once
        for first, data, last in read:
            rows += _load(con, first, data, name)
            blocks += 1
            if rows > limits.rows:
                raise too_many_rows(name, limits)
            keys |= dict.fromkeys(_check_block(con, name))
            if len(keys) > limits.columns:
                having = "have" if last else "have at least"
                raise too_many_columns(name, f"its objects {having} {len(keys)} distinct keys,", limits)
    return list(keys), blocks


def _extract(con: Any, keys: list[str], before: int) -> pa.Table:
    """The loaded block's values as text (null and "" as null), its records numbered after `before`."""
    values = ", ".join(f"nullif(json_extract_string(line, {quote_literal(_pointer(k))}), '') AS c{i}"
                       for i, k in enumerate(keys))
    table = con.sql(f"SELECT {values + ', ' if keys else ''}row_number() OVER (ORDER BY n) + {before} AS _line "
                    "FROM j ORDER BY n").to_arrow_table()
    return table.rename_columns([*keys, LINE_COLUMN]).cast(_schema(keys))


def _schema(keys: list[str]) -> pa.Schema:
    return pa.schema([*((k, pa.string()) for k in keys), (LINE_COLUMN, pa.int64())])


def _pointer(key: str) -> str:
    """A JSON Pointer (RFC 6901) to a top-level key."""
    return "/" + key.replace("~", "~0").replace("/", "~1")


def _extracted(con: Any, source: Source, keys: list[str], blocks: int, name: str) -> Iterator[pa.Table]:
    """Each block's values: the one loaded by the check, or every block read again."""
    if blocks == 1:
        yield _extract(con, keys, 0)
        return
    rows = 0
    with closing(_blocks(source)) as read:
        for first, data, _ in read:
            block_rows = _load(con, first, data, name)
            if block_rows:
                yield _extract(con, keys, rows)
            rows += block_rows


def jsonl_batches(source: Source, name: str, limits: ParseLimits = PULL_LIMITS) -> Iterator[pa.RecordBatch]:
    """JSON Lines → batches of text columns plus `_line` (at least one batch); blank lines are skipped, a
    line that is not an object is refused with its line number. Values are the text as sent (numbers as
    written, true/false, nested values as JSON, null and "" as null); the limits are checked, block by
    block, before a single value is extracted."""
    import duckdb  # one connection per payload: JSON parsing in C++

    con = duckdb.connect()
    try:
        keys, blocks = _scan(con, source, name, limits)
        found = False
        for table in _extracted(con, source, keys, blocks, name) if blocks else ():
            for batch in table.combine_chunks().to_batches():
                found = True
                yield batch
        if not found:
            yield empty_batch(_schema(keys))
    finally:
        con.close()


def read_jsonl(data: Source, name: str, limits: ParseLimits = PULL_LIMITS) -> pa.Table:
    """JSON Lines → one table of text columns plus `_line` (`jsonl_batches`, collected)."""
    return collect(jsonl_batches(data, name, limits))
