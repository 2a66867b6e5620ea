"""Conform a raw batch to its contract: map, type, check every row, quarantine with reasons.

The work runs as one DuckDB query over the raw batch (no Python loop over rows), and DuckDB writes
the accepted and quarantined rows to Parquet itself (`conform_to_files`). A row that
fails any check goes to quarantine with every reason it has; an exact repeat of an earlier row
is counted as a duplicate; every other row is accepted. received = accepted + quarantined +
duplicates always holds, and `Conformed.check_counts` proves it.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from quality.reasons import template
from quality.rows import QUARANTINE_SCHEMA as QUARANTINE_SCHEMA  # where conform's users know it
from quality.rows import REASON_TYPE as REASON_TYPE
from quality.rows import read_quarantined
from quality.sql import (
    anchor_checks,
    control_check,
    control_flag_sql,
    field_checks,
    key_text_sql,
    rule_checks,
    sql_literal,
    text_expr,
    typed_expr,
)
from schemas.contract import DELETED_COLUMN as DELETED
from schemas.contract import LINE_COLUMN, RAW_COLUMN, Contract
from schemas.derive import arrow_schema, duckdb_type
from schemas.divisions import Registry
from schemas.errors import TerminalError
from schemas.homefiles import make_folder
from schemas.messages import HEADER_MISSING, header_looks_missing, shown_names
from schemas.sql import quote_ident, quote_literal

LINE = LINE_COLUMN
_FALSE_TEXT = "('', '0', 'false', 'f', 'no', 'n', '否')"
# DuckDB spills beyond this (into the check's folder): a batch of any size conforms within it.
MEMORY_LIMIT = "1GB"
# rows per row group DuckDB writes: each thread buffers one (with its reasons and raw JSON) before it is written
ROW_GROUP_ROWS = 32 * 1024


class SourceColumnsError(TerminalError):
    """A batch lacks columns its feed maps, or sends columns nobody mapped."""


@dataclass(frozen=True)
class SourceMapping:
    """How a feed's columns and values become contract fields (from the feed config)."""

    feed: str
    fields: Mapping[str, str]
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    dates: Mapping[str, str] = field(default_factory=dict)
    constants: Mapping[str, object] = field(default_factory=dict)
    ignore: tuple[str, ...] = ()
    deleted: str | None = None

    @property
    def source_columns(self) -> list[str]:
        """Every source column the feed reads: the mapped ones and the soft-delete marker."""
        return [*self.fields, *([self.deleted] if self.deleted else [])]


@dataclass(frozen=True)
class Conformed:
    """The outcome of conforming one batch."""

    accepted: pa.Table
    quarantined: pa.Table
    duplicates: int
    received: int
    # rows whose key is broken: missing, or repeated with other content (a share of them refuses the batch)
    broken_keys: int = 0

    def check_counts(self) -> None:
        """Raise if any row went missing: received = accepted + quarantined + duplicates."""
        ConformedCounts(self.accepted.num_rows, self.quarantined.num_rows, self.duplicates, self.received,
                        self.broken_keys).check_counts()


@dataclass(frozen=True)
class ConformedCounts:
    """The counts of one batch conformed into files (accepted.parquet, quarantined.parquet)."""

    accepted: int
    quarantined: int
    duplicates: int
    received: int
    broken_keys: int = 0

    def check_counts(self) -> None:
        """Raise if any row went missing: received = accepted + quarantined + duplicates."""
        total = self.accepted + self.quarantined + self.duplicates
        if total != self.received:
            raise AssertionError(f"conform lost rows: received {self.received}, accounted {total}")


def check_columns(columns: list[str], mapping: SourceMapping, contract: Contract) -> None:
    """Refuse a batch whose columns do not fit the feed mapping, saying which and how to fix it."""
    sent = set(columns) - {LINE}
    expected = mapping.source_columns
    missing = [s for s in expected if s not in sent]
    extra = sorted(sent - set(expected) - set(mapping.ignore))
    if (missing or extra) and header_looks_missing(sent):
        raise SourceColumnsError(f"Feed {mapping.feed!r}: {HEADER_MISSING} with the columns {expected} "
                                 f"(see the feed config connectors/feeds/ and {contract.source})")
    if missing or extra:
        raise SourceColumnsError(
            f"Feed {mapping.feed!r} sent columns {shown_names(sorted(sent))}; missing {missing}, "
            f"unmapped {shown_names(extra)}. "
            f"The contract is {contract.source}: add a field mapping in the feed config "
            "(connectors/feeds/) or ask the department to send the agreed columns.")
    unmapped = [f for f in contract.field_names
                if f not in mapping.fields.values() and f not in mapping.constants]
    if unmapped:
        raise SourceColumnsError(f"Feed {mapping.feed!r} maps nothing to contract fields {unmapped} "
                                 f"of {contract.source}; add them to 'fields' or 'constants'")


def _division_table(registries: Mapping[int, Registry]) -> pa.Table:
    rows = [(r.vintage, d.code, d.tier) for r in registries.values() for d in r.divisions.values()]
    return pa.table({"vintage": [r[0] for r in rows], "code": [r[1] for r in rows],
                     "tier": [r[2] for r in rows]})


def _deleted_sql(mapping: SourceMapping) -> str:
    """A row is a tombstone when the feed's deleted column is set and not a 'false' word."""
    if mapping.deleted is None:
        return "false"
    col = quote_ident(mapping.deleted)
    return f"coalesce(lower(trim(CAST({col} AS VARCHAR))) NOT IN {_FALSE_TEXT}, false)"


def _select_sql(contract: Contract, mapping: SourceMapping, today: dt.date, scope: str | None) -> str:
    """One pass over the raw rows: typed values plus the list of reasons each row fails."""
    by_field = {v: k for k, v in mapping.fields.items()}
    texts, typed, checks = [], [], []
    for f in contract.fields:
        text = text_expr(by_field.get(f.name), mapping.constants.get(f.name), mapping.values.get(f.name),
                         normalise=f.type == "string")
        texts.append(f"{text} AS {quote_ident('t_' + f.name)}")
        if by_field.get(f.name) is not None and f.type == "string":
            texts.append(f"{control_flag_sql(quote_ident(by_field[f.name]))} AS {quote_ident('c_' + f.name)}")
            checks.append(control_check(f, quote_ident("c_" + f.name), _message_sql))
        typed.append(f"{typed_expr(f, quote_ident('t_' + f.name), mapping.dates.get(f.name))} AS {quote_ident(f.name)}")
        checks.extend(field_checks(f, quote_ident("t_" + f.name), quote_ident(f.name), today, _message_sql))
    checks.extend(anchor_checks(contract, quote_ident("t_" + contract.anchor), _message_sql, scope))
    checks.extend(rule_checks(contract, today, _message_sql))
    reasons = "flatten([" + ", ".join(checks) + "])" if checks else "[]"
    fields = ", ".join(quote_ident(f) for f in contract.field_names)
    return f"""
        WITH texted AS (SELECT {LINE}, {_deleted_sql(mapping)} AS {DELETED}, {", ".join(texts)} FROM raw),
        typed AS (SELECT *, {", ".join(typed)} FROM texted)
        SELECT {LINE}, {fields}, {DELETED}, {reasons} AS _reasons FROM typed r"""


def _message_sql(code: str, field_name: str, title: str, value_sql: str) -> str:
    sentence = template(code).format(field=field_name, title=title, value="{}")
    return f"format({sql_literal(sentence)}, coalesce({value_sql}, ''))"


def conform_batch(raw: pa.Table | Path, contract: Contract, mapping: SourceMapping,
                  registries: Mapping[int, Registry], today: dt.date, scope: str | None = None) -> Conformed:
    """Map a raw text batch to the contract; split it into accepted, quarantined and duplicates.

    `raw` is an Arrow table or the path of its Parquet file. Accepted rows carry `_deleted` (a
    tombstone for the key, from the feed's soft-delete column). With `scope` (the division of a
    community that pushed the batch) a row anchored outside it is quarantined as
    `outside_jurisdiction`, and the accepted rows also carry their values as sent (`_raw`, JSON):
    the merge still quarantines a row whose key is another division's current record
    (`key_owned_elsewhere`). The rows are returned as Arrow tables: for a small batch (a push, a
    test); a pulled batch is conformed into files (`conform_to_files`)."""
    with tempfile.TemporaryDirectory(prefix="civicnet-conform-") as tmp:
        work = Path(tmp)
        counts = conform_to_files(raw, contract, mapping, registries, today, work / "accepted.parquet",
                                  work / "quarantined.parquet", scope)
        accepted = pq.read_table(work / "accepted.parquet").sort_by(LINE)  # the file is in no order
        result = Conformed(
            accepted=accepted.cast(accepted_schema(contract, with_raw=scope is not None)),
            quarantined=read_quarantined(work / "quarantined.parquet"), duplicates=counts.duplicates,
            received=counts.received, broken_keys=counts.broken_keys)
    result.check_counts()
    return result


def accepted_schema(contract: Contract, with_raw: bool = False) -> pa.Schema:
    """The Arrow schema of a batch's accepted rows: the contract's fields, `_deleted`, `_line` (and `_raw`)."""
    schema = arrow_schema(contract).append(pa.field(DELETED, pa.bool_(), nullable=False)) \
        .append(pa.field(LINE, pa.int64(), nullable=False))
    return schema.append(pa.field(RAW_COLUMN, pa.string())) if with_raw else schema


def conform_to_files(raw: pa.Table | Path, contract: Contract, mapping: SourceMapping,
                     registries: Mapping[int, Registry], today: dt.date, accepted: Path, quarantined: Path,
                     scope: str | None = None) -> ConformedCounts:
    """`conform_batch` writing the rows to Parquet files `accepted` and `quarantined` from inside DuckDB:
    the rows never sit in Python memory, and DuckDB spills beside `accepted` past its memory limit, so
    a batch of any size conforms in bounded memory. Returns the counts."""
    columns = pq.read_schema(raw).names if isinstance(raw, Path) else raw.column_names
    check_columns(columns, mapping, contract)
    spill = make_folder(accepted.parent / ".conform-spill")
    con = duckdb.connect(config={"memory_limit": MEMORY_LIMIT, "preserve_insertion_order": False,
                                 "temp_directory": str(spill)})
    con.execute("SET enable_progress_bar = false")
    try:
        if isinstance(raw, Path):
            con.execute(f"CREATE VIEW raw AS SELECT * FROM read_parquet({quote_literal(str(raw))})")
        else:
            con.register("raw", raw)
        con.register("divisions", _division_table(registries))
        # the checked rows go to a file beside the output, not a table in DuckDB's memory: every later
        # query streams them from there, so the memory a batch takes does not grow with its size
        checked = spill / "checked.parquet"
        _copy(con, _select_sql(contract, mapping, today, scope), checked, compression="lz4_raw")
        con.execute(f"CREATE VIEW checked AS SELECT * FROM read_parquet({quote_literal(str(checked))})")
        _find_repeats(con, contract)
        # fetchall, not fetchone: DuckDB 2.0 refuses a relation while a result is unfinished
        (received,), = con.execute("SELECT count(*) FROM raw").fetchall()
        return _split(con, contract, mapping, int(received), (accepted, quarantined), with_raw=scope is not None)
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def _find_repeats(con: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    """`repeats`: clean rows whose key an earlier clean row already had; `_same` if the content is
    identical (a duplicate, counted) or not (a key conflict, quarantined with `duplicate_key`).
    Only keys that occur more than once are hashed, so a clean batch costs one aggregate."""
    pk = ", ".join(quote_ident(k) for k in contract.primary_key)
    content = "md5(to_json(struct_pack(" + ", ".join(quote_ident(f) for f in [*contract.field_names, DELETED]) + ")))"
    con.execute(f"""
        CREATE TEMP TABLE repeats AS
        SELECT {LINE}, _same FROM (
            SELECT {LINE}, row_number() OVER win AS _rank,
                   {content} = first_value({content}) OVER win AS _same
            FROM checked SEMI JOIN (SELECT {pk} FROM checked WHERE len(_reasons) = 0
                                    GROUP BY ALL HAVING count(*) > 1) USING ({pk})
            WHERE len(_reasons) = 0
            WINDOW win AS (PARTITION BY {pk} ORDER BY {LINE}))
        WHERE _rank > 1""")


def _copy(con: duckdb.DuckDBPyConnection, query: str, path: Path, compression: str = "zstd") -> int:
    """Write a query's rows to a Parquet file from inside DuckDB; returns how many."""
    (rows,), = con.execute(f"COPY ({query}) TO {quote_literal(str(path))} "
                           f"(FORMAT parquet, COMPRESSION {compression}, ROW_GROUP_SIZE {ROW_GROUP_ROWS})").fetchall()
    return int(rows)


def _split(con: duckdb.DuckDBPyConnection, contract: Contract, mapping: SourceMapping,
           received: int, to: tuple[Path, Path], with_raw: bool = False) -> ConformedCounts:
    typed = [(f.name, duckdb_type(f)) for f in contract.fields] + [(DELETED, "BOOLEAN"), (LINE, "BIGINT")]
    cols = ", ".join(f"CAST(checked.{quote_ident(c)} AS {t}) AS {quote_ident(c)}" for c, t in typed)
    raw_cols = ", ".join(f"raw.{quote_ident(c)}" for c in mapping.source_columns)
    if with_raw:
        cols += f", to_json(struct_pack({raw_cols}))::VARCHAR AS {RAW_COLUMN}"
    accepted = _copy(con, f"""SELECT {cols} FROM checked ANTI JOIN repeats USING ({LINE})
                              {f"JOIN raw USING ({LINE})" if with_raw else ""}
                              WHERE len(_reasons) = 0""", to[0])
    first = contract.field(contract.primary_key[0])
    value = f"CAST(c.{quote_ident(first.name)} AS VARCHAR)"
    conflict = (f"[struct_pack(code := 'duplicate_key', field := {sql_literal(first.name)}, message := "
                f"{_message_sql('duplicate_key', first.name, first.title, value)})]")
    # the held rows first (a table DuckDB knows is small), then their values as sent: the join builds
    # on them, streaming the raw batch past, never building on the whole batch
    con.execute(f"""CREATE TEMP TABLE held AS
        SELECT {LINE}, {key_text_sql(contract, 'checked')} AS key, _reasons AS reasons FROM checked
        WHERE len(_reasons) > 0
        UNION ALL
        SELECT c.{LINE}, {key_text_sql(contract, 'c')}, {conflict} FROM checked c JOIN repeats USING ({LINE})
        WHERE NOT _same""")
    quarantined = _copy(con, f"""
        SELECT q.{LINE}, CAST(q.key AS VARCHAR) AS key, q.reasons,
               to_json(struct_pack({raw_cols}))::VARCHAR AS raw
        FROM raw JOIN held q USING ({LINE}) ORDER BY q.{LINE}""", to[1])
    missing_key = " OR ".join(f"{quote_ident(k)} IS NULL" for k in contract.primary_key)
    (duplicates, broken), = con.execute(f"""SELECT (SELECT count(*) FROM repeats WHERE _same),
                                                   (SELECT count(*) FROM repeats WHERE NOT _same)
                                                 + (SELECT count(*) FROM checked WHERE {missing_key})""").fetchall()
    result = ConformedCounts(accepted, quarantined, int(duplicates), received, int(broken))
    result.check_counts()
    return result
