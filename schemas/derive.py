"""Types derived from a contract: Arrow schema and DuckDB column types. Never retyped elsewhere."""

from __future__ import annotations

import pyarrow as pa

from schemas.contract import Contract, Field
from schemas.divisions import Tier
from schemas.sql import quote_ident

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


def key_sql(contract: Contract, alias: str) -> str:
    """A row's primary key as one text value (tombstones, releases and quarantine name rows by it);
    the parts of a compound key are joined by the unit separator, chr(31)."""
    parts = [f"CAST({alias}.{quote_ident(k)} AS VARCHAR)" for k in contract.primary_key]
    return parts[0] if len(parts) == 1 else "concat_ws(chr(31), " + ", ".join(parts) + ")"
