"""Per-node statistics: row counts and order-independent checksums per dataset.

A checksum here is what "equal" means between nodes everywhere: `value_checksum_sql` is the one
definition, used for the node checksums of the network index (extracts/network.json) and, per
division, for the control totals verify compares (warehouse.reconcile).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import duckdb

from schemas.contract import Contract, Field
from schemas.divisions import Tier, tier_of
from schemas.sql import qualified, quote_ident, quote_literal


@dataclass(frozen=True)
class NodeStats:
    """Rows and checksum of every dataset a node holds."""

    code: str
    tier: Tier
    rows: dict[str, int]
    checksums: dict[str, str]  # value_checksum_sql over the fields of the node's tier, as decimal text


def value_checksum_sql(fields: Iterable[Field]) -> str:
    """The SQL aggregate of the checksum of a set of rows: the 128-bit sum of each row's hash of the
    values of `fields` (the fields a node of one tier holds). Order-independent, and a repeated row
    adds instead of cancelling out (as it would with XOR). It hashes the values, never the stored
    `_row_hash`: sync copies that column, so a value edited in place would keep it."""
    struct = ", ".join(f"{quote_ident(f.name)} := {quote_ident(f.name)}" for f in fields)
    return f"coalesce(sum(CAST(hash(struct_pack({struct})) AS HUGEINT)), 0)"


def _checksum_sql(alias: str, contract: Contract, tier: Tier) -> str:
    return f"""SELECT {quote_literal(contract.name)}, count(*),
                      CAST({value_checksum_sql(contract.fields_for_tier(tier))} AS VARCHAR)
               FROM {qualified(alias, contract.name)}"""


def node_stats(con: duckdb.DuckDBPyConnection, alias: str, code: str, contracts: list[Contract]) -> NodeStats:
    """Counts and checksums of every dataset that reaches this node's tier, in one query: a node's
    checksum of a dataset is the sum of its control-totals hashes over all its divisions."""
    tier = tier_of(code)
    held = [c for c in contracts if tier in c.reaches]
    rows = con.execute(" UNION ALL ".join(_checksum_sql(alias, c, tier) for c in held)).fetchall() if held else []
    return NodeStats(code, tier, {r[0]: int(r[1]) for r in rows}, {r[0]: str(r[2]) for r in rows})
