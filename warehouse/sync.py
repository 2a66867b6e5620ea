"""Sync one node from its parent along the division tree, exactly once in effect.

A child pulls from its parent the rows and tombstones stamped with origin sequence numbers
above its high-water mark and anchored in its subtree, applies them, relays the tombstones
(its own children pull from it the same way), and moves its mark, all in one transaction.
A sync killed at any point and run again leaves the node as one clean run would.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from schemas.contract import Contract
from schemas.divisions import subtree_prefix
from warehouse.node import META_COLUMNS, high_water_mark, key_sql, node_tier, set_high_water_mark


@dataclass(frozen=True)
class SyncResult:
    """What one dataset's sync changed in one node."""

    dataset: str
    from_seq: int
    to_seq: int
    upserts: int
    deletes: int


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: list[object]) -> int:
    row = con.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def _sync_dataset(con: duckdb.DuckDBPyConnection, child: str, parent: str, code: str,
                  contract: Contract) -> SyncResult | None:
    tier = node_tier(con, child)
    start, end = high_water_mark(con, child, contract.name), high_water_mark(con, parent, contract.name)
    if end <= start:
        return None
    name, prefix = contract.name, subtree_prefix(code)
    window = "_seq > ? AND _seq <= ? AND starts_with(division_code, ?)"
    params: list[object] = [start, end, prefix]
    cols = ", ".join(f'"{f.name}"' for f in contract.fields_for_tier(tier)) + ", " + \
        ", ".join(c for c, _ in META_COLUMNS)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE gone AS SELECT key FROM {parent}._civicnet.tombstones
                    WHERE dataset = ? AND {window}""", [name, *params])
    con.execute(f"""CREATE OR REPLACE TEMP TABLE upserts AS SELECT {cols}
                    FROM {parent}."{name}" WHERE {window}""", params)
    deletes = _count(con, f"""SELECT count(*) FROM {child}."{name}" c
                              WHERE {key_sql(contract, 'c')} IN (SELECT key FROM gone)""", [])
    con.execute(f"""DELETE FROM {child}."{name}" c USING gone g WHERE {key_sql(contract, 'c')} = g.key""")
    con.execute(f"""DELETE FROM {child}."{name}" c USING upserts u
                    WHERE {key_sql(contract, 'c')} = {key_sql(contract, 'u')}""")
    con.execute(f'INSERT INTO {child}."{name}" SELECT * FROM upserts')
    con.execute(f"""INSERT INTO {child}._civicnet.tombstones SELECT * FROM {parent}._civicnet.tombstones
                    WHERE dataset = ? AND {window}""", [name, *params])
    upserts = _count(con, "SELECT count(*) FROM upserts", [])
    set_high_water_mark(con, child, name, end)
    return SyncResult(name, start, end, upserts, deletes)


def sync_node(con: duckdb.DuckDBPyConnection, child: str, parent: str, parent_code: str, code: str,
              contracts: list[Contract]) -> list[SyncResult]:
    """Bring `child` (attached) up to `parent` (attached) in one transaction for all datasets."""
    tier = node_tier(con, child)
    con.execute("BEGIN TRANSACTION")
    try:
        results = [r for c in contracts if tier in c.reaches
                   if (r := _sync_dataset(con, child, parent, code, c)) is not None]
        for r in results:
            con.execute(f"""INSERT INTO {child}._civicnet.sync_log VALUES (?, ?, ?, ?, ?, ?, now())""",
                        [parent_code, r.dataset, r.from_seq, r.to_seq, r.upserts, r.deletes])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return results
