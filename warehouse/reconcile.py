"""Reconciliation across tiers: control totals per dataset × division, parent against child.

A child node holds exactly its parent's rows anchored in its subtree, restricted to the fields
its tier may hold. Control totals make that checkable without moving rows: per division code,
the row count, the sum of each measure the contract declares, and an order-independent hash of
the row values (warehouse.stats.value_checksum_sql: the checksum the network index keeps per node,
so the hashes of a node's divisions add up to that node's checksum). Where totals differ,
`repair_slices` re-copies only those divisions of that dataset from the parent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import duckdb

from schemas.contract import Contract, Field
from schemas.divisions import Tier, parent_of, subtree_prefix, tier_of
from schemas.sql import qualified, quote_ident
from warehouse.node import META_COLUMNS, high_water_marks, meta_table, transaction
from warehouse.pgnode import Effect, literal
from warehouse.stats import value_checksum_sql

if TYPE_CHECKING:
    from warehouse.stores import Replica

# Measures are summed as exact decimals: a sum of doubles depends on the order DuckDB adds them in.
MEASURE_TYPE = "DECIMAL(38,6)"
NO_DIVISION = ""  # the key of rows whose division_code is NULL (only a damaged node has them)
WHOLE_NODE = "*"  # the division named by a mismatch about a whole dataset (a node behind its parent)


@dataclass(frozen=True)
class Totals:
    """Control totals of one dataset in one division of one node."""

    rows: int
    measures: tuple[Decimal, ...]
    hash: int


TotalsByDivision = dict[str, Totals]


@dataclass(frozen=True)
class Mismatch:
    """One way a child node differs from its parent in one dataset and division.

    `what` is `rows`, `measure:<field>`, `hash`, `behind` (the node has not synced the parent's
    latest changes yet: a sync, not a repair, brings it level) or `missing` (no node file)."""

    node: str
    tier: Tier
    parent: str
    dataset: str
    division_code: str
    what: str
    parent_value: str
    child_value: str

    @property
    def detail(self) -> str:
        """What differs, in words."""
        if self.what == "missing":
            return f"node has no file: run `civicnet sync --district {self.node[:6]}000000`"
        if self.what == "behind":
            return (f"node has synced up to sequence {self.child_value}, its parent is at {self.parent_value}: "
                    f"run `civicnet sync --district {self.node[:6]}000000`")
        return f"{self.what}: parent {self.parent_value}, node {self.child_value}"


def measure_fields(contract: Contract, fields: Iterable[Field]) -> list[Field]:
    """The contract's measures among `fields`, in contract order."""
    names = {f.name for f in fields}
    return [f for f in contract.fields if f.measure and f.name in names]


def _totals_sql(alias: str, contract: Contract, fields: tuple[Field, ...], prefix: bool) -> str:
    sums = ", ".join(f"coalesce(sum(CAST({quote_ident(f.name)} AS {MEASURE_TYPE})), 0)"
                     for f in measure_fields(contract, fields))
    measures = f"[{sums}]" if sums else f"[]::{MEASURE_TYPE}[]"
    where = "starts_with(division_code, ?)" if prefix else "TRUE"
    return f"""SELECT ?, coalesce(division_code, '{NO_DIVISION}'), count(*), {measures}, {value_checksum_sql(fields)}
               FROM {qualified(alias, contract.name)} WHERE {where} GROUP BY ALL"""


def _totals(rows: list[tuple[Any, ...]]) -> dict[str, TotalsByDivision]:
    out: dict[str, TotalsByDivision] = {}
    for dataset, code, n, sums, h in rows:
        out.setdefault(dataset, {})[str(code)] = Totals(int(n), tuple(Decimal(m) for m in sums), int(h))
    return out


def control_totals(con: duckdb.DuckDBPyConnection, alias: str, contract: Contract, fields: Iterable[Field],
                   prefix: str | None = None) -> TotalsByDivision:
    """Per division code: row count, measure sums and value hash of `fields` in one dataset of an
    attached node (one GROUP BY), optionally only the divisions under `prefix`."""
    params = [contract.name] if prefix is None else [contract.name, prefix]
    sql = _totals_sql(alias, contract, tuple(fields), prefix is not None)
    return _totals(con.execute(sql, params).fetchall()).get(contract.name, {})


def node_totals(con: duckdb.DuckDBPyConnection, alias: str, contracts: Iterable[Contract], tier: Tier,
                prefix: str | None = None) -> dict[str, TotalsByDivision]:
    """control_totals of every dataset in `contracts`, over the fields of `tier`, in one query
    (a GROUP BY per dataset: the round trips, not the scans, dominate on small nodes)."""
    parts: list[str] = []
    params: list[object] = []
    for contract in contracts:
        parts.append(_totals_sql(alias, contract, contract.fields_for_tier(tier), prefix is not None))
        params += [contract.name] + ([] if prefix is None else [prefix])
    totals = _totals(con.execute(" UNION ALL ".join(parts), params).fetchall()) if parts else {}
    return {c.name: totals.get(c.name, {}) for c in contracts}


def _zero(measures: int) -> Totals:
    return Totals(0, (Decimal(0),) * measures, 0)


def diff_totals(child_code: str, contract: Contract, expected: Mapping[str, Totals],
                actual: Mapping[str, Totals]) -> list[Mismatch]:
    """Every difference between the totals a child should have (`expected`) and those it has."""
    tier = tier_of(child_code)
    measures = measure_fields(contract, contract.fields_for_tier(tier))
    zero = _zero(len(measures))
    out = []
    for division in sorted(set(expected) | set(actual)):
        want, have = expected.get(division, zero), actual.get(division, zero)
        if want == have:
            continue
        pairs: list[tuple[str, object, object]] = [("rows", want.rows, have.rows)]
        pairs += [(f"measure:{f.name}", w, h) for f, w, h in zip(measures, want.measures, have.measures, strict=True)]
        pairs += [("hash", want.hash, have.hash)]
        out += [Mismatch(child_code, tier, parent_of(child_code), contract.name, division, what, str(w), str(h))
                for what, w, h in pairs if w != h]
    return out


def lagging_datasets(child_code: str, contracts: Iterable[Contract], parent_marks: Mapping[str, int],
                     child_marks: Mapping[str, int]) -> list[Mismatch]:
    """A `behind` mismatch for each dataset whose high-water mark in the child is below the parent's
    (warehouse.node.high_water_marks): its totals cannot agree until the next sync, and repairing
    it would only pre-empt that sync."""
    tier = tier_of(child_code)
    return [Mismatch(child_code, tier, parent_of(child_code), c.name, WHOLE_NODE, "behind",
                     str(parent_marks.get(c.name, 0)), str(child_marks.get(c.name, 0)))
            for c in contracts if tier in c.reaches and child_marks.get(c.name, 0) < parent_marks.get(c.name, 0)]


def compare_node(child_code: str, contracts: Iterable[Contract], parent_marks: Mapping[str, int],
                 child_marks: Mapping[str, int], expected: Mapping[str, Mapping[str, Totals]],
                 actual: Mapping[str, Mapping[str, Totals]]) -> list[Mismatch]:
    """Compare a child node with its parent, every dataset of `contracts` the child's tier holds: the
    one comparison (the verify walk and the tests both call it).

    A dataset the child has not synced up to the parent's high-water mark is reported as `behind`
    and not compared; the others by control totals per division. `expected` are the totals the
    child should have, per dataset (its parent's over the child's subtree and the child tier's
    fields); `actual` those it has, over all its rows, so a row outside its jurisdiction shows too."""
    tier = tier_of(child_code)
    held = [c for c in contracts if tier in c.reaches]
    behind = lagging_datasets(child_code, held, parent_marks, child_marks)
    skipped = {m.dataset for m in behind}
    return behind + [m for c in held if c.name not in skipped
                     for m in diff_totals(child_code, c, expected[c.name], actual[c.name])]


def slices(mismatches: Iterable[Mismatch]) -> dict[str, set[str]]:
    """The divisions that differ, per dataset (a node behind or missing is left to the next sync)."""
    out: dict[str, set[str]] = {}
    for m in mismatches:
        if m.what not in ("behind", "missing"):
            out.setdefault(m.dataset, set()).add(m.division_code)
    return out


@dataclass(frozen=True)
class RepairedSlice:
    """Divisions of one dataset of one node re-copied from its parent."""

    node: str
    parent: str
    dataset: str
    divisions: tuple[str, ...]
    removed: int
    copied: int


def repair_slices(con: duckdb.DuckDBPyConnection, parent_alias: str, child_alias: str, child_code: str,
                  contract: Contract, divisions: Iterable[str], replica: Replica | None = None) -> RepairedSlice:
    """Replace the child's rows of `divisions` in one dataset by the parent's, in one transaction.

    Copies the child tier's fields and the meta columns as sync does (so later syncs by sequence
    window carry on from the same rows) and records the repair in the child's sync log. Rows of
    other divisions and other datasets are not rewritten. `replica`: the child's store of record,
    written in the same transaction."""
    tier, prefix = tier_of(child_code), subtree_prefix(child_code)
    wanted = sorted(set(divisions))
    cols = ", ".join([quote_ident(f.name) for f in contract.fields_for_tier(tier)] + [c for c, _ in META_COLUMNS])
    in_slices = f"list_contains(?::VARCHAR[], coalesce(division_code, '{NO_DIVISION}'))"
    mine, theirs = qualified(child_alias, contract.name), qualified(parent_alias, contract.name)
    with transaction(con):
        removed = con.execute(f"DELETE FROM {mine} WHERE {in_slices}", [wanted]).fetchall()
        copied = con.execute(f"""INSERT INTO {mine} SELECT {cols} FROM {theirs}
                                 WHERE {in_slices} AND starts_with(division_code, ?)""", [wanted, prefix]).fetchall()
        mark = high_water_marks(con, child_alias).get(contract.name, 0)
        con.execute(f"INSERT INTO {meta_table(child_alias, 'sync_log')} VALUES (?, ?, ?, ?, ?, ?, now())",
                    [parent_of(child_code), contract.name, mark, mark, copied[0][0], removed[0][0]])
        if replica is not None:
            listed = ", ".join(literal(d) for d in wanted)
            name = literal(contract.name)
            replica.push(con, child_alias, [
                Effect(contract.name, f"coalesce(division_code, '{NO_DIVISION}') IN ({listed})"),
                Effect("_civicnet.sync_log", f"dataset = {name} AND parent = {literal(parent_of(child_code))} "
                                             f"AND from_seq = {mark} AND to_seq = {mark}")])
    return RepairedSlice(child_code, parent_of(child_code), contract.name, tuple(wanted),
                         int(removed[0][0]), int(copied[0][0]))
