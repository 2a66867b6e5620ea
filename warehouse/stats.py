"""Per-node statistics: row counts and order-independent checksums per dataset."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from schemas.contract import Contract
from schemas.divisions import Tier, tier_of
from schemas.sql import qualified, quote_literal


@dataclass(frozen=True)
class NodeStats:
    """Rows and checksum of every dataset a node holds."""

    code: str
    tier: Tier
    rows: dict[str, int]
    checksums: dict[str, str]


def _checksum_sql(alias: str, dataset: str) -> str:
    # (row count, sum of the row-version hashes): order-independent, equal when the node holds the
    # same versions (a 128-bit sum, so a repeated row does not cancel out as it would with XOR).
    return f"""SELECT {quote_literal(dataset)}, count(*),
                      CAST(coalesce(sum(CAST(hash(_row_hash) AS HUGEINT)), 0) AS VARCHAR)
               FROM {qualified(alias, dataset)}"""


def node_stats(con: duckdb.DuckDBPyConnection, alias: str, code: str, contracts: list[Contract]) -> NodeStats:
    """Counts and checksums of every dataset that reaches this node's tier, in one query."""
    tier = tier_of(code)
    names = [c.name for c in contracts if tier in c.reaches]
    rows = con.execute(" UNION ALL ".join(_checksum_sql(alias, n) for n in names)).fetchall() if names else []
    return NodeStats(code, tier, {r[0]: int(r[1]) for r in rows}, {r[0]: str(r[2]) for r in rows})
