"""The four-tier network: sync a district's whole subtree from the city, publishing as it goes.

Airflow maps one task per district (9 tasks, not 900): each opens one DuckDB connection,
attaches the city read-only and walks district → streets → communities, each node synced from
its parent in its own transaction and published once it is detached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from schemas.contract import Contract
from schemas.divisions import Registry, tier_of
from schemas.errors import InvalidDivisionCodeError
from warehouse.extract import extract_is_stale, publish_extract
from warehouse.node import attach, connect, detach, ensure_node, node_path, prepare_node
from warehouse.stats import NodeStats, node_stats
from warehouse.sync import SyncResult, sync_node

OnNode = Callable[[str, list[SyncResult]], None]


@dataclass
class SubtreeReport:
    """Per-node results of syncing one subtree."""

    root: str
    nodes: list[NodeStats] = field(default_factory=list)
    changes: dict[str, list[SyncResult]] = field(default_factory=dict)


def _alias(code: str) -> str:
    return f"n{code}"


def _sync_one(con: duckdb.DuckDBPyConnection, home: Path, code: str, parent: str,
              contracts: list[Contract], report: SubtreeReport, on_node: OnNode | None) -> None:
    attach(con, prepare_node(home, code, contracts), _alias(code))
    ensure_node(con, _alias(code), code, contracts)
    results = sync_node(con, _alias(code), _alias(parent), parent, code, contracts)
    report.changes[code] = results
    if on_node is not None:
        on_node(code, results)


def _finish(con: duckdb.DuckDBPyConnection, home: Path, code: str, contracts: list[Contract],
            report: SubtreeReport) -> None:
    report.nodes.append(node_stats(con, _alias(code), code, contracts))
    detach(con, _alias(code))
    if extract_is_stale(home, code):
        publish_extract(home, code)


def _walk(con: duckdb.DuckDBPyConnection, home: Path, registry: Registry, code: str, parent: str,
          contracts: list[Contract], report: SubtreeReport, on_node: OnNode | None) -> None:
    _sync_one(con, home, code, parent, contracts, report, on_node)
    for child in registry.children(code):
        _walk(con, home, registry, child.code, code, contracts, report, on_node)
    _finish(con, home, code, contracts, report)


def sync_subtree(home: Path, registry: Registry, root: str, contracts: list[Contract],
                 on_node: OnNode | None = None) -> SubtreeReport:
    """Sync `root` (a district, street or community) and everything below it from its parent."""
    parent = registry.get(root).parent_code
    con = connect()
    try:
        attach(con, node_path(home, parent), _alias(parent), read_only=True)
        report = SubtreeReport(root)
        _walk(con, home, registry, root, parent, contracts, report, on_node)
        return report
    finally:
        con.close()


def publish_origin(home: Path, code: str, contracts: list[Contract]) -> NodeStats:
    """Publish the city node's extract and return its stats (the city has no parent to sync from)."""
    if tier_of(code) != "city":
        raise InvalidDivisionCodeError(f"{code} is not the city: only the root node is published without a sync")
    con = connect()
    try:
        attach(con, node_path(home, code), "origin", read_only=True)
        stats = node_stats(con, "origin", code, contracts)
        detach(con, "origin")
    finally:
        con.close()
    if extract_is_stale(home, code):
        publish_extract(home, code)
    return stats
