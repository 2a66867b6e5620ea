"""Verify and repair: every node of a subtree checked against its parent by control totals, anew.

The independent recompute an operator runs (`civicnet verify`): the sync walk checks each node as
it passes it, with the totals of unchanged nodes taken from its last walk; this walk reads every
node again. It goes down from a subtree's root (a district, under the city) to its communities,
on one DuckDB connection, with every node attached read-only while it is checked (a node that
agrees is never opened for writing, so its file stays byte for byte as it was). The checks,
their totals and the nearest-right-ancestor fallback are warehouse.check's, shared with the sync.
With `repair`, the differing slices of a node are re-copied from its parent before its children
are checked against it. The registry and the contracts are passed in: nothing here reads
configuration.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from schemas.contract import Contract
from schemas.divisions import Registry, parent_of, tier_of
from warehouse.check import Checker, Frame, VerifyReport
from warehouse.extract import publish_extract
from warehouse.node import attach, connect, detach, detach_if_attached, high_water_marks, node_errors
from warehouse.reconcile import WHOLE_NODE, Mismatch, repair_slices, slices
from warehouse.skipped import UNAVAILABLE, skipped_node
from warehouse.stores import node_path, store_of


class _Walk:
    """One verify run: its checker (totals, report), and the walk down the tree with repair."""

    def __init__(self, home: Path, registry: Registry, contracts: list[Contract], repair: bool,
                 root: str) -> None:
        self.home, self.registry, self.contracts, self.repair = home, registry, contracts, repair
        self.checker = Checker(contracts, registry.get(root).parent_code, root)
        self.report = self.checker.report

    def fix(self, con: duckdb.DuckDBPyConnection, frames: list[Frame], node: Frame,
            found: list[Mismatch]) -> None:
        """Re-copy the differing slices from the parent, publish the node's extract again."""
        by_name = {c.name: c for c in self.contracts}
        detach(con, node.alias)
        attach(con, node_path(self.home, node.code), node.alias)
        replica = store_of(self.home, node.code).replica()
        try:
            for dataset, divisions in sorted(slices(found).items()):
                self.report.repaired.append(repair_slices(con, frames[-1].alias, node.alias, node.code,
                                                          by_name[dataset], divisions, replica=replica))
        finally:
            detach(con, node.alias)
            attach(con, node_path(self.home, node.code), node.alias, read_only=True)
        publish_extract(self.home, node.code)
        self.checker.forget(node.code, changed=True)

    def visit(self, con: duckdb.DuckDBPyConnection, code: str, frames: list[Frame]) -> None:
        """Check (and repair) one node, then its children against it. A node that cannot be opened
        is reported as skipped and its children are checked against the nearest ancestor read."""
        store = store_of(self.home, code)
        path = store.local
        if not store.exists():
            missing = Mismatch(code, tier_of(code), parent_of(code), WHOLE_NODE, WHOLE_NODE, "missing", "", "")
            self.report.mismatches.append(missing)
            self.report.remaining.append(missing)
            return
        alias = f"n{code}"
        try:
            with node_errors(path):
                store.ready(self.contracts, fresh=True)  # a server node is read anew from the server
                node = self.open_and_check(con, frames, code, alias)
        except UNAVAILABLE as err:
            self.report.skipped.append(skipped_node(code, err))
            self.checker.forget(code)
            detach_if_attached(con, alias)
            for child in self.registry.children(code):
                self.visit(con, child.code, frames)
            return
        try:
            for child in self.registry.children(code):
                self.visit(con, child.code, [*frames, node])
        finally:
            detach(con, alias)
            self.checker.forget(code)

    def open_and_check(self, con: duckdb.DuckDBPyConnection, frames: list[Frame], code: str,
                       alias: str) -> Frame:
        """Attach a node read-only, check it (repair it if asked) and leave it attached."""
        attach(con, node_path(self.home, code), alias, read_only=True)
        node = Frame(code, alias, high_water_marks(con, alias))
        found = remaining = self.checker.compare(con, frames, node)
        if self.repair and slices(found):
            self.fix(con, frames, node, found)
            remaining = self.checker.compare(con, frames, node)
        self.checker.record(node, found, remaining)
        return node


def verify_subtree(home: Path, registry: Registry, contracts: list[Contract], root: str,
                   repair: bool = False) -> VerifyReport:
    """Check `root` (a district, street or community) and every node below it against its parent,
    the root against its own parent (read for the root's divisions only); with `repair`, re-copy
    the slices that differ (only those, only in the nodes that differ) and republish those nodes'
    extracts. The parent of the root must have a node file."""
    parent = registry.get(root).parent_code
    walk = _Walk(home, registry, contracts, repair, root)
    con = connect()
    try:
        store_of(home, parent).ready(contracts, fresh=True)
        attach(con, node_path(home, parent), f"n{parent}", read_only=True)
        walk.visit(con, root, [Frame(parent, f"n{parent}", high_water_marks(con, f"n{parent}"))])
    finally:
        con.close()
    return walk.report
