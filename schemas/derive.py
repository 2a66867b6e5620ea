"""Types derived from a contract: Arrow schema and DuckDB column types. Never retyped elsewhere.

Also a row's primary key as one text value (tombstones, releases and quarantine name rows by it):
the parts of a compound key joined by KEY_SEPARATOR, the unit separator chr(31), which no code, id
or name holds; people read it with the parts joined by " | " instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from schemas.contract import Contract, Field
from schemas.divisions import Tier
from schemas.sql import quote_ident, quote_literal

_ARROW = {
    "string": pa.string(), "integer": pa.int64(), "number": pa.float64(), "date": pa.date32(),
    "datetime": pa.timestamp("us", tz="UTC"), "boolean": pa.bool_(),
}
_DUCKDB = {
    "string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "date": "DATE",
    "datetime": "TIMESTAMPTZ", "boolean": "BOOLEAN",
}


def arrow_type(f: Field) -> pa.DataType:
    """The Arrow type of one field."""
    return _ARROW[f.type]


def duckdb_type(f: Field) -> str:
    """The DuckDB column type of one field."""
    return _DUCKDB[f.type]


def arrow_schema(contract: Contract, tier: Tier | None = None) -> pa.Schema:
    """The Arrow schema of a dataset, for one tier's fields if a tier is given."""
    fields = contract.fields if tier is None else contract.fields_for_tier(tier)
    return pa.schema([pa.field(f.name, arrow_type(f), nullable=not f.required) for f in fields])


def column_definitions(contract: Contract, tier: Tier) -> list[tuple[str, str]]:
    """(name, DuckDB type) for the fields a node of this tier holds."""
    return [(f.name, duckdb_type(f)) for f in contract.fields_for_tier(tier)]


KEY_SEPARATOR = chr(31)  # between the parts of a compound key
KEY_DISPLAY_SEPARATOR = " | "  # between them where people read a key
_SEPARATOR_SQL = f"chr({ord(KEY_SEPARATOR)})"


def key_text(parts: Sequence[str]) -> str:
    """A primary key's parts as the one text value key_sql makes of them in SQL."""
    return KEY_SEPARATOR.join(parts)


def key_parts(key: str) -> list[str]:
    """The parts of a key made by key_text or key_sql."""
    return key.split(KEY_SEPARATOR)


def display_key(key: str | None) -> str:
    """A key as people read it in a report: its parts joined by " | " ("" for no key)."""
    return "" if key is None else key.replace(KEY_SEPARATOR, KEY_DISPLAY_SEPARATOR)


def key_sql(contract: Contract, alias: str) -> str:
    """A row's primary key as one text value, in SQL: the parts of a compound key joined by KEY_SEPARATOR."""
    parts = [f"CAST({alias}.{quote_ident(k)} AS VARCHAR)" for k in contract.primary_key]
    return parts[0] if len(parts) == 1 else f"concat_ws({_SEPARATOR_SQL}, " + ", ".join(parts) + ")"


def display_key_sql(key: str) -> str:
    """display_key in SQL, of the key text value `key` (an SQL expression)."""
    return f"replace({key}, {_SEPARATOR_SQL}, {quote_literal(KEY_DISPLAY_SEPARATOR)})"
