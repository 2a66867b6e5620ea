"""Sync one node from its parent along the division tree, exactly once in effect.

A child pulls from its parent the rows and tombstones stamped with origin sequence numbers
above its high-water mark and anchored in its subtree, applies them, relays the tombstones
(its own children pull from it the same way), and moves its mark, all in one transaction.
A sync killed at any point and run again leaves the node as one clean run would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb

from schemas.contract import Contract
from schemas.derive import key_sql
from schemas.divisions import Tier, subtree_prefix, tier_of
from schemas.sql import qualified, quote_ident
from warehouse.node import META_COLUMNS, high_water_marks, meta_table, set_high_water_marks, stamp_code, transaction
from warehouse.pgnode import Effect, literal

if TYPE_CHECKING:
    from warehouse.stores import Replica

Marks = Mapping[str, int]  # dataset -> the last origin sequence number a node has applied


@dataclass(frozen=True)
class SyncResult:
    """What one dataset's sync changed in one node: rows written, and rows removed or replaced."""

    dataset: str
    from_seq: int
    to_seq: int
    upserts: int
    removed: int


def _rowcount(cur: duckdb.DuckDBPyConnection) -> int:
    row = cur.fetchone()
    return int(row[0]) if row else 0


def _sync_dataset(con: duckdb.DuckDBPyConnection, child: str, parent: str, tier: Tier, prefix: str,
                  contract: Contract, start: int, end: int) -> SyncResult:
    name = contract.name
    mine, theirs = qualified(child, name), qualified(parent, name)
    tombstones = meta_table(parent, "tombstones")
    window = "_seq > ? AND _seq <= ? AND starts_with(division_code, ?)"
    params: list[object] = [start, end, prefix]
    removed = 0
    if start > 0:  # a fresh node has nothing to remove or replace
        removed = _rowcount(con.execute(f"""
            DELETE FROM {mine} c WHERE {key_sql(contract, 'c')} IN (
                SELECT key FROM {tombstones} WHERE dataset = ? AND {window}
                UNION ALL SELECT {key_sql(contract, 'p')} FROM {theirs} p WHERE {window})""",
                                        [name, *params, *params]))
    cols = ", ".join(quote_ident(f.name) for f in contract.fields_for_tier(tier)) + ", " + \
        ", ".join(c for c, _ in META_COLUMNS)
    upserts = _rowcount(con.execute(f"INSERT INTO {mine} SELECT {cols} FROM {theirs} WHERE {window}", params))
    con.execute(f"""INSERT INTO {meta_table(child, "tombstones")} SELECT * FROM {tombstones}
                    WHERE dataset = ? AND {window}""", [name, *params])
    return SyncResult(name, start, end, upserts, removed)


def pending_datasets(con: duckdb.DuckDBPyConnection, child: str, parent: str, code: str,
                     contracts: list[Contract], have: Marks | None = None, offered: Marks | None = None) -> list[str]:
    """The datasets `child` (attached) has yet to apply from `parent` (attached): those whose
    parent holds rows or tombstones under the child's subtree stamped above the child's mark.

    A node's mark may lag its parent's where the parent's newer changes are all outside the
    node's subtree: a sync leaves such a node as it is (its file is not written), and it is level
    with its parent all the same. One query on the parent, none when the marks are equal; `have`
    and `offered` are the two nodes' marks, if the caller has read them already."""
    tier, prefix = tier_of(code), subtree_prefix(code)
    have = high_water_marks(con, child) if have is None else have
    offered = high_water_marks(con, parent) if offered is None else offered
    ahead = [c.name for c in contracts if tier in c.reaches and offered.get(c.name, 0) > have.get(c.name, 0)]
    if not ahead:
        return []
    parts, params = [], []
    for name in ahead:
        window = "_seq > ? AND starts_with(division_code, ?)"
        parts.append(f"""SELECT ? WHERE EXISTS (SELECT 1 FROM {qualified(parent, name)} WHERE {window})
                         OR EXISTS (SELECT 1 FROM {meta_table(parent, "tombstones")} WHERE dataset = ? AND {window})""")
        params += [name, have.get(name, 0), prefix, name, have.get(name, 0), prefix]
    return sorted(str(r[0]) for r in con.execute(" UNION ALL ".join(parts), params).fetchall())


def sync_effects(parent: str, parent_code: str, code: str, contracts: list[Contract],
                 results: list[SyncResult]) -> list[Effect]:
    """What a sync changed in the child, for a store of record elsewhere (warehouse.stores): the
    rows of the keys the parent changed in the window (all rows, for a dataset synced the first
    time), the tombstones, marks and log rows of the window."""
    by_name = {c.name: c for c in contracts}
    prefix = subtree_prefix(code)
    effects, tombstones, marks, log = [], [], [], []
    for r in results:
        contract, name = by_name[r.dataset], literal(r.dataset)
        window = f"_seq > {r.from_seq} AND _seq <= {r.to_seq} AND starts_with(division_code, {literal(prefix)})"
        ids = None
        where = "true"
        if r.from_seq > 0:
            where = f"{key_sql(contract, 't')} IN {{ids}}"
            ids = f"""SELECT key AS _id FROM {meta_table(parent, "tombstones")} WHERE dataset = {name} AND {window}
                      UNION ALL SELECT {key_sql(contract, 'p')} FROM {qualified(parent, r.dataset)} p WHERE {window}"""
        effects.append(Effect(r.dataset, where, ids))
        tombstones.append(f"(dataset = {name} AND _seq > {r.from_seq} AND _seq <= {r.to_seq})")
        marks.append(f"(dataset = {name} AND seq = {r.to_seq})")
        log.append(f"(dataset = {name} AND parent = {literal(parent_code)} AND to_seq = {r.to_seq})")
    if results:  # the bookkeeping of every dataset in one effect per table
        effects += [Effect("_civicnet.tombstones", " OR ".join(tombstones)),
                    Effect("_civicnet.hwm", " OR ".join(marks)), Effect("_civicnet.sync_log", " OR ".join(log))]
    return effects


def sync_node(con: duckdb.DuckDBPyConnection, child: str, parent: str, parent_code: str, code: str,
              contracts: list[Contract], offered: Marks | None = None, stamp: bool = False,
              replica: Replica | None = None) -> list[SyncResult]:
    """Bring `child` (attached) up to `parent` (attached) in one transaction for all datasets
    (`offered`: the parent's marks, if the caller has read them already; `stamp`: the child is
    fresh from its template, and its code is stamped in the same transaction; `replica`: the
    child's store of record, written in the same transaction)."""
    tier, prefix = tier_of(code), subtree_prefix(code)
    have = {} if stamp else high_water_marks(con, child)  # a node fresh from its template has no marks
    offered = high_water_marks(con, parent) if offered is None else offered
    todo = [c for c in contracts if tier in c.reaches and offered.get(c.name, 0) > have.get(c.name, 0)]
    if not todo and not stamp:
        return []
    with transaction(con):
        if stamp:
            stamp_code(con, child, code)
        results = [_sync_dataset(con, child, parent, tier, prefix, c, have.get(c.name, 0), offered[c.name])
                   for c in todo]
        if not results:
            return []
        set_high_water_marks(con, child, {r.dataset: r.to_seq for r in results})
        values = ", ".join("(?, ?, ?, ?, ?, ?, now())" for _ in results)
        con.execute(f"INSERT INTO {meta_table(child, 'sync_log')} VALUES {values}",
                    [v for r in results for v in (parent_code, r.dataset, r.from_seq, r.to_seq, r.upserts, r.removed)])
        if replica is not None:
            replica.push(con, child, sync_effects(parent, parent_code, code, contracts, results))
    return results
