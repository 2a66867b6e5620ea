"""Rollups of a periodic report at each hop of the network, and the check that each hop's totals
equal the sum of its children's (issue 13, item 5).

A node's rollup of a report for a period is made of the row count and the sum of each measure
(the contract's `measure` fields). They are grouped by the report's `rollup_by` fields and taken
over the rows anchored in the node's subtree. Each node also splits the same totals by child (the
child holding the row's anchor). The check compares, for every child, the parent's slice with
the child's own rollup. A mismatch names the child, the group, the measure and both values. A
child holding rows its parent does not have is a mismatch as well, and so is the reverse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import duckdb

from schemas.contract import Contract
from schemas.divisions import tier_of
from schemas.reporting import Period
from schemas.sql import qualified, quote_ident

# the SQL of the child of a node holding a division code, by the node's tier
_CHILD_OF = {"city": "substr(division_code, 1, 6) || '000000'", "district": "substr(division_code, 1, 9) || '000'",
             "street": "division_code"}
Group = tuple[object, ...]  # the rollup_by values of one group


@dataclass(frozen=True)
class Totals:
    """One group's row count and measure sums."""

    rows: int
    sums: Mapping[str, float]


@dataclass(frozen=True)
class NodeRollup:
    """A node's rollup of one report and period: its own totals, and the same split by child."""

    code: str
    totals: Mapping[Group, Totals]
    by_child: Mapping[str, Mapping[Group, Totals]]


@dataclass(frozen=True)
class RollupMismatch:
    """A parent's slice for a child that differs from the child's own rollup."""

    node: str
    child: str
    group: Group
    measure: str  # "rows" or a measure field
    node_value: float
    child_value: float

    def sentence(self) -> str:
        return (f"{self.node}'s rollup for child {self.child}, group {list(self.group)}: {self.measure} "
                f"{self.node_value:g} here, {self.child_value:g} in {self.child}'s own rollup")


def measures(contract: Contract) -> list[str]:
    return [f.name for f in contract.fields if f.measure]


def rollup(con: duckdb.DuckDBPyConnection, alias: str, code: str, contract: Contract, period: Period) -> NodeRollup:
    """The rollup of the node attached as `alias` (its code `code`) for one period."""
    rule = contract.reporting
    assert rule is not None
    where, params = rule.placed_in(period)
    by = [quote_ident(f) for f in rule.rollup_by]
    names = measures(contract)
    child = _CHILD_OF.get(tier_of(code), "NULL")
    sums = "".join(f", sum({quote_ident(m)})" for m in names)
    keys = ", ".join([child, *by])
    rows = con.execute(f"SELECT {keys}, count(*){sums} FROM {qualified(alias, contract.name)} WHERE {where} "
                       f"GROUP BY ALL", params).fetchall()
    totals: dict[Group, list[float]] = {}
    by_child: dict[str, dict[Group, Totals]] = {}
    width = len(by)
    for row in rows:
        group, values = tuple(row[1:1 + width]), [float(v or 0) for v in row[1 + width:]]
        kept = totals.setdefault(group, [0.0] * len(values))
        totals[group] = [a + b for a, b in zip(kept, values, strict=True)]
        if row[0] is not None:
            by_child.setdefault(str(row[0]), {})[group] = _totals(values, names)
    return NodeRollup(code, {g: _totals(v, names) for g, v in totals.items()}, by_child)


def _totals(values: list[float], names: list[str]) -> Totals:
    return Totals(int(values[0]), {n: round(v, 2) for n, v in zip(names, values[1:], strict=True)})


def check(parent: NodeRollup, children: Mapping[str, NodeRollup]) -> list[RollupMismatch]:
    """Every difference between the parent's slices and its children's own rollups."""
    found = []
    for code in sorted(set(children) | set(parent.by_child)):
        mine = parent.by_child.get(code, {})
        theirs = children[code].totals if code in children else {}
        for group in sorted(set(mine) | set(theirs), key=repr):
            a, b = mine.get(group, Totals(0, {})), theirs.get(group, Totals(0, {}))
            if a.rows != b.rows:
                found.append(RollupMismatch(parent.code, code, group, "rows", a.rows, b.rows))
            for name in sorted(set(a.sums) | set(b.sums)):
                if abs(a.sums.get(name, 0.0) - b.sums.get(name, 0.0)) > 0.005:
                    found.append(RollupMismatch(parent.code, code, group, name, a.sums.get(name, 0.0),
                                                b.sums.get(name, 0.0)))
    return found
