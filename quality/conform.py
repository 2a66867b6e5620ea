"""Conform a raw batch to its contract: map, type, check every row, quarantine with reasons.

The work runs as one DuckDB query over the Arrow batch (no Python loop over rows). A row that
fails any check goes to quarantine with every reason it has; an exact repeat of an earlier row
is counted as a duplicate; every other row is accepted. received = accepted + quarantined +
duplicates always holds, and `Conformed.check_counts` proves it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from quality.reasons import MESSAGES, Reason
from quality.sql import anchor_checks, field_checks, quote_ident, sql_literal, text_expr, typed_expr
from schemas.contract import Contract
from schemas.derive import arrow_schema
from schemas.divisions import Registry
from schemas.errors import TerminalError

LINE = "_line"


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


@dataclass(frozen=True)
class Conformed:
    """The outcome of conforming one batch."""

    accepted: pa.Table
    quarantined: pa.Table
    duplicates: int
    received: int

    def check_counts(self) -> None:
        """Raise if any row went missing: received = accepted + quarantined + duplicates."""
        total = self.accepted.num_rows + self.quarantined.num_rows + self.duplicates
        if total != self.received:
            raise AssertionError(f"conform lost rows: received {self.received}, accounted {total}")


def _check_columns(raw: pa.Table, mapping: SourceMapping, contract: Contract) -> None:
    sent = set(raw.column_names) - {LINE}
    missing = [s for s in mapping.fields if s not in sent]
    extra = sorted(sent - set(mapping.fields) - set(mapping.ignore))
    if missing or extra:
        raise SourceColumnsError(
            f"Feed {mapping.feed!r} sent columns {sorted(sent)}; missing {missing}, unmapped {extra}. "
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


def _select_sql(contract: Contract, mapping: SourceMapping, today: dt.date) -> str:
    by_field = {v: k for k, v in mapping.fields.items()}
    texts, typed, checks = [], [], []
    for f in contract.fields:
        text = text_expr(by_field.get(f.name), mapping.constants.get(f.name), mapping.values.get(f.name))
        texts.append(f"{text} AS {quote_ident('t_' + f.name)}")
        typed.append(f"{typed_expr(f, quote_ident('t_' + f.name), mapping.dates.get(f.name))} AS {quote_ident(f.name)}")
        checks.extend(field_checks(f, quote_ident("t_" + f.name), quote_ident(f.name), today, _message_sql))
    checks.extend(anchor_checks(contract, quote_ident("t_" + contract.anchor), _message_sql))
    reasons = "flatten([" + ", ".join(checks) + "])" if checks else "[]"
    raw_cols = ", ".join(quote_ident(c) for c in mapping.fields)
    return f"""
        WITH src AS (SELECT *, to_json(struct_pack({raw_cols})) AS _raw FROM raw),
        texted AS (SELECT {LINE}, _raw, {", ".join(texts)} FROM src),
        typed AS (SELECT *, {", ".join(typed)} FROM texted)
        SELECT *, {reasons} AS _reasons FROM typed r"""


def _message_sql(code: Reason, field_name: str, title: str, value_sql: str) -> str:
    template = MESSAGES[code].format(field=field_name, title=title, value="{}")
    return f"format({sql_literal(template)}, coalesce({value_sql}, ''))"


def conform_batch(raw: pa.Table, contract: Contract, mapping: SourceMapping,
                  registries: Mapping[int, Registry], today: dt.date) -> Conformed:
    """Map a raw text batch to the contract; split it into accepted, quarantined and duplicates."""
    _check_columns(raw, mapping, contract)
    con = duckdb.connect()
    try:
        con.register("raw", raw)
        con.register("divisions", _division_table(registries))
        con.execute(f"CREATE TEMP TABLE checked AS {_select_sql(contract, mapping, today)}")
        _mark_duplicates(con, contract)
        return _split(con, contract, raw.num_rows)
    finally:
        con.close()


def _mark_duplicates(con: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    """Among clean rows, a later row with an earlier row's key is a duplicate (same content)
    or a key conflict (different content, quarantined with `duplicate_key`)."""
    pk = ", ".join(quote_ident(k) for k in contract.primary_key)
    content = "md5(to_json(struct_pack(" + ", ".join(quote_ident(f) for f in contract.field_names) + ")))"
    first = contract.primary_key[0]
    f = contract.field(first)
    message = _message_sql("duplicate_key", f.name, f.title, f"CAST({quote_ident(first)} AS VARCHAR)")
    con.execute(f"""
        CREATE TEMP TABLE marked AS
        SELECT c.*, w._rank, w._content = w._first_content AS _same FROM checked c
        LEFT JOIN (SELECT {LINE}, row_number() OVER win AS _rank, {content} AS _content,
                          first_value({content}) OVER win AS _first_content
                   FROM checked WHERE len(_reasons) = 0
                   WINDOW win AS (PARTITION BY {pk} ORDER BY {LINE})) w USING ({LINE})""")
    con.execute(f"""
        UPDATE marked SET _reasons = [struct_pack(code := 'duplicate_key', field := {sql_literal(first)},
                                                  message := {message})]
        WHERE _rank > 1 AND NOT _same""")


def _split(con: duckdb.DuckDBPyConnection, contract: Contract, received: int) -> Conformed:
    schema = arrow_schema(contract).append(pa.field(LINE, pa.int64(), nullable=False))
    cols = ", ".join(quote_ident(c) for c in [*contract.field_names, LINE])
    accepted = con.sql(
        f"SELECT {cols} FROM marked WHERE len(_reasons) = 0 AND coalesce(_rank, 1) = 1 ORDER BY {LINE}"
    ).to_arrow_table()
    quarantined = con.sql(
        f"SELECT {LINE}, _reasons AS reasons, _raw AS raw FROM marked WHERE len(_reasons) > 0 ORDER BY {LINE}"
    ).to_arrow_table()
    duplicates = con.execute(
        "SELECT count(*) FROM marked WHERE len(_reasons) = 0 AND _rank > 1").fetchone()
    result = Conformed(
        accepted=accepted.cast(pa.schema([pa.field(f.name, f.type) for f in schema])),
        quarantined=quarantined, duplicates=int(duplicates[0]) if duplicates else 0, received=received)
    result.check_counts()
    return result
