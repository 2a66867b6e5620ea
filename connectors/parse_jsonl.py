"""JSON Lines (one object per line, UTF-8) → an Arrow table of text columns plus `_line`."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

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


def _pointer(key: str) -> str:
    """A JSON Pointer (RFC 6901) to a top-level key."""
    return "/" + key.replace("~", "~0").replace("/", "~1")


def _json_checks(con: Any, name: str, limits: ParseLimits) -> None:
    """Refuse, before any value is extracted: too many lines, a line that is not one JSON object,
    an object that repeats a key (which value counts would be a guess), too many distinct keys."""
    (rows,), = con.execute("SELECT count(*) FROM j").fetchall()
    if rows > limits.rows:
        raise too_many_rows(name, limits)
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
        raise too_many_columns(name, f"its objects have {distinct} distinct keys,", limits)


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
