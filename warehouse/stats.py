"""Per-node statistics: row counts and order-independent checksums per dataset."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from schemas.contract import Contract
from schemas.divisions import Tier, tier_of


@dataclass(frozen=True)
class NodeStats:
    """Rows and checksum of every dataset a node holds."""

    code: str
    tier: Tier
    rows: dict[str, int]
    checksums: dict[str, str]


def dataset_checksum(con: duckdb.DuckDBPyConnection, alias: str, dataset: str) -> tuple[int, str]:
    """(row count, sum of the row-version hashes): order-independent, equal when the node holds
    the same versions (a 128-bit sum, so a repeated row does not cancel out as with XOR)."""
    row = con.execute(f"""SELECT count(*), CAST(coalesce(sum(CAST(hash(_row_hash) AS HUGEINT)), 0) AS VARCHAR)
                          FROM {alias}."{dataset}" """).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def node_stats(con: duckdb.DuckDBPyConnection, alias: str, code: str, contracts: list[Contract]) -> NodeStats:
    """Counts and checksums of every dataset that reaches this node's tier."""
    tier = tier_of(code)
    rows, sums = {}, {}
    for c in contracts:
        if tier in c.reaches:
            rows[c.name], sums[c.name] = dataset_checksum(con, alias, c.name)
    return NodeStats(code, tier, rows, sums)
