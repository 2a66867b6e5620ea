"""The four-tier network: sync a district's whole subtree from the city, publishing as it goes.

Airflow maps one task per district (10 tasks, not 900): each opens one DuckDB connection,
attaches the city read-only and walks district → streets → communities, each node synced from
its parent in its own transaction, checked against it by control totals while both are attached
(warehouse.check: the reconciliation, with no second pass over the files), and published once it
is detached.

A node that cannot be opened (another process holds it, or its file is damaged) is skipped and
reported, not fatal: the walk goes on, and that node's children sync from its nearest healthy
ancestor (the rows of their subtree are the same there). A full disk stops the walk.
`rebuild_node` makes a new file for a damaged node from its nearest healthy ancestor.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from schemas.contract import Contract
from schemas.divisions import Registry, parent_of, tier_of
from schemas.errors import InvalidDivisionCodeError, TerminalError
from warehouse.check import Checker, Frame, KnownTotals, VerifyReport
from warehouse.extract import extract_is_stale, publish_extract
from warehouse.node import (
    NodeCorruptError,
    attach,
    connect,
    detach,
    detach_if_attached,
    ensure_node,
    high_water_marks,
    layout_digest,
    meta_table,
    node_errors,
    rebuild_hint,
)
from warehouse.skipped import UNAVAILABLE, SkippedNode, skipped_node
from warehouse.stats import NodeStats, node_stats
from warehouse.stores import ServerStore, node_path, store_of
from warehouse.sync import Marks, SyncResult, pending_datasets, sync_node
from warehouse.walkstore import FileStamp, file_stamp

OnNode = Callable[[str, list[SyncResult]], None]
KnownStats = Callable[[str], NodeStats | None]


class CityNotRebuildableError(TerminalError):
    """The city node has no parent to be rebuilt from."""


@dataclass
class SubtreeReport:
    """Per-node results of syncing one subtree, and the nodes it had to skip."""

    root: str
    nodes: list[NodeStats] = field(default_factory=list)
    changes: dict[str, list[SyncResult]] = field(default_factory=dict)
    skipped: list[SkippedNode] = field(default_factory=list)
    checker: Checker | None = None  # the checks made on the walk: its report and the totals it used
    stamps: dict[str, FileStamp | None] = field(default_factory=dict)  # each node file as the walk left it

    @property
    def checks(self) -> VerifyReport:
        """The reconciliation done on the walk (every node checked against its parent)."""
        return self.checker.report if self.checker is not None else VerifyReport(dt.datetime.now(dt.UTC))


def _alias(code: str) -> str:
    return f"n{code}"


def _sync_one(con: duckdb.DuckDBPyConnection, walk: _Walk, code: str, parent: Frame) -> tuple[Frame, bool]:
    """Bring one node level with its parent and leave it attached: its frame, and True if its file
    was written. A node with nothing to apply is only ever attached read-only (its file, and its
    extract, stay as they were)."""
    store, alias = store_of(walk.home, code), _alias(code)
    path = store.local
    results: list[SyncResult] = []
    # a write-ahead log left by a killed run holds commits the file (and so its extract) lacks yet:
    # attached for writing, the node is checkpointed and then published
    marks = None
    if store.ready(walk.contracts) and not path.with_name(f"{path.name}.wal").exists():
        marks = _marks_if_level(con, path, alias, parent, code, walk.contracts)
    written = marks is None
    if marks is None:
        attach(con, store.prepare(walk.contracts), alias)
        fresh = ensure_node(con, alias, code, walk.contracts, stamp=False)
        results = sync_node(con, alias, parent.alias, parent.code, code, walk.contracts, parent.marks, stamp=fresh,
                            replica=store.replica())
        marks = {r.dataset: r.to_seq for r in results} if fresh else high_water_marks(con, alias)
    walk.report.changes[code] = results
    if walk.on_node is not None:
        walk.on_node(code, results)
    return Frame(code, alias, marks), written


def _marks_if_level(con: duckdb.DuckDBPyConnection, path: Path, alias: str, parent: Frame, code: str,
                    contracts: list[Contract]) -> Marks | None:
    """Attach an existing node read-only and return its marks if it has nothing to apply (and the
    layout this civicnet writes); otherwise detach it again, to be attached for writing, and
    return None."""
    attach(con, path, alias, read_only=True)
    try:
        stamp = con.execute(f"SELECT code, layout FROM {meta_table(alias, 'node')}").fetchone()
    except duckdb.Error:
        stamp = None
    marks = high_water_marks(con, alias) if stamp == (code, layout_digest(contracts)) else None
    if marks is None or pending_datasets(con, alias, parent.alias, code, contracts, marks, parent.marks):
        detach(con, alias)
        return None
    return marks


@dataclass
class _Walk:
    """One sync walk down a subtree: where, what, the report, and the checks made on the way."""

    home: Path
    registry: Registry
    contracts: list[Contract]
    report: SubtreeReport
    checker: Checker
    on_node: OnNode | None


def _check(con: duckdb.DuckDBPyConnection, walk: _Walk, frames: list[Frame], node: Frame, written: bool) -> None:
    """Check a node, now level with its parent, against it by control totals (it stays attached)."""
    if written:
        walk.checker.forget(node.code, changed=True)
    found = walk.checker.compare(con, frames, node)
    walk.checker.record(node, found, found)


def _finish(con: duckdb.DuckDBPyConnection, walk: _Walk, node: Frame) -> None:
    walk.report.nodes.append(walk.checker.stats(con, node))
    detach(con, node.alias)
    walk.report.stamps[node.code] = file_stamp(node_path(walk.home, node.code))  # the file its totals are of
    if extract_is_stale(walk.home, node.code):
        publish_extract(walk.home, node.code)


def _walk(con: duckdb.DuckDBPyConnection, walk: _Walk, code: str, frames: list[Frame]) -> None:
    """Sync and check one node, then its children from it; a node that cannot be opened is
    skipped and its children sync from (and are checked against) its nearest healthy ancestor."""
    path = node_path(walk.home, code)
    try:
        with node_errors(path):
            node, written = _sync_one(con, walk, code, frames[-1])
            _check(con, walk, frames, node, written)
    except UNAVAILABLE as err:
        walk.report.skipped.append(skipped_node(code, err))
        walk.checker.forget(code, changed=True)
        detach_if_attached(con, _alias(code))
        for child in walk.registry.children(code):
            _walk(con, walk, child.code, frames)
        return
    for child in walk.registry.children(code):
        _walk(con, walk, child.code, [*frames, node])
    try:
        with node_errors(path):
            _finish(con, walk, node)
    except UNAVAILABLE as err:  # damage found only while counting its rows
        walk.report.skipped.append(skipped_node(code, err))
        walk.checker.forget(code, changed=True)
        detach_if_attached(con, _alias(code))


def sync_subtree(home: Path, registry: Registry, root: str, contracts: list[Contract],
                 on_node: OnNode | None = None, known: KnownTotals | None = None) -> SubtreeReport:
    """Sync `root` (a district, street or community) and everything below it from its parent,
    checking each node against its parent by control totals on the way (the report's `checks`).

    Nodes that cannot be opened are skipped and listed in the report's `skipped`; the caller
    decides how to fail (raise_for_skipped). `known(code, tier)` may give the totals of a node this
    sync did not write (warehouse.walkstore), so an unchanged node is not scanned again."""
    parent = registry.get(root).parent_code
    checker = Checker(contracts, parent, root, known)
    report = SubtreeReport(root, checker=checker)
    con = connect()
    try:
        store_of(home, parent).ready(contracts)
        attach(con, node_path(home, parent), _alias(parent), read_only=True)
        report.stamps[parent] = file_stamp(node_path(home, parent))  # held read-only: it cannot change meanwhile
        top = Frame(parent, _alias(parent), high_water_marks(con, _alias(parent)))
        _walk(con, _Walk(home, registry, contracts, report, checker, on_node), root, [top])
        checker.report.skipped = list(report.skipped)
        return report
    finally:
        con.close()


def publish_origin(home: Path, code: str, contracts: list[Contract], known: KnownStats | None = None) -> NodeStats:
    """Publish the city node's extract and return its stats (the city has no parent to sync from);
    `known` as for sync_subtree."""
    if tier_of(code) != "city":
        raise InvalidDivisionCodeError(f"{code} is not the city: only the root node is published without a sync")
    store_of(home, code).ready(contracts)
    if extract_is_stale(home, code):
        publish_extract(home, code)
    known_stats = None if known is None else known(code)
    if known_stats is not None:
        return known_stats
    return _stats_of(node_path(home, code), code, contracts)


def _stats_of(path: Path, code: str, contracts: list[Contract]) -> NodeStats:
    con = connect()
    try:
        attach(con, path, "origin", read_only=True)
        stats = node_stats(con, "origin", code, contracts)
        detach(con, "origin")
    finally:
        con.close()
    return stats


@dataclass(frozen=True)
class RebuiltNode:
    """What rebuild_node did: the node, the ancestor it was synced from, where the old file went."""

    code: str
    source: str
    kept_at: tuple[str, ...]
    stats: NodeStats


def move_aside(path: Path, stamp: str) -> list[Path]:
    """Rename a node file (and its write-ahead log, which must never be replayed onto a new file)
    to `<name>.damaged-<stamp>` beside it; nothing is deleted. Returns the new paths."""
    moved = []
    for old in (path, path.with_name(f"{path.name}.wal")):
        if old.exists():
            new = old.with_name(f"{old.name}.damaged-{stamp}")
            os.replace(old, new)
            moved.append(new)
    return moved


def _refuse_if_locked(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Raise NodeLockedError if another process has the node open (its file must not be moved
    under it); a damaged file is what rebuild is for, so that is no reason to refuse."""
    try:
        attach(con, path, "damaged", read_only=True)
    except NodeCorruptError:
        return
    detach(con, "damaged")


def _healthy_ancestor(con: duckdb.DuckDBPyConnection, home: Path, code: str, contracts: list[Contract]) -> str:
    """Attach the nearest ancestor of `code` that opens (read-only, as `src`); returns its code."""
    problems = []
    ancestor = code
    while tier_of(ancestor) != "city":
        ancestor = parent_of(ancestor)
        try:
            with node_errors(node_path(home, ancestor)):
                store_of(home, ancestor).ready(contracts)
                attach(con, node_path(home, ancestor), "src", read_only=True)
                con.execute("SELECT count(*) FROM src._civicnet.hwm").fetchall()
            return ancestor
        except UNAVAILABLE as err:
            problems.append(str(err))
            detach_if_attached(con, "src")
    raise NodeCorruptError(f"no ancestor of node {code} can be read to rebuild it from:\n  " + "\n  ".join(problems))


def rebuild_node(home: Path, code: str, contracts: list[Contract], now: dt.datetime) -> RebuiltNode:
    """Move a (damaged) node file aside, make a new one from its tier's template and sync it from
    its nearest healthy ancestor, then publish its extract. `now` stamps the kept file's name.

    Its children need nothing: they hold their own rows and marks, and sync from it as before."""
    if tier_of(code) == "city":
        raise CityNotRebuildableError(rebuild_hint(code))
    store = store_of(home, code)
    if isinstance(store, ServerStore) and store.exists():  # its data of record is whole on the server
        kept = move_aside(store.local, now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ"))
        store.ready(contracts, fresh=True)
        publish_extract(home, code)
        return RebuiltNode(code, store.url, tuple(str(k) for k in kept), _stats_of(store.local, code, contracts))
    path = store.local
    con = connect()
    try:
        if path.exists():
            _refuse_if_locked(con, path)
        source = _healthy_ancestor(con, home, code, contracts)
        kept = move_aside(path, now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ"))
        with node_errors(path):
            attach(con, store.prepare(contracts), "node")
            ensure_node(con, "node", code, contracts)
            sync_node(con, "node", "src", source, code, contracts, replica=store.replica())
            stats = node_stats(con, "node", code, contracts)
            detach(con, "node")
    finally:
        con.close()
    publish_extract(home, code)
    return RebuiltNode(code, source, tuple(str(k) for k in kept), stats)
