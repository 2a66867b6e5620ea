"""The network steps the network DAG and the CLI call: sync each district's subtree from the city,
publish the city, write the network index, rebuild a damaged node.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from civicnet.context import VINTAGE, city_code, contracts, districts, registry
from schemas.divisions import Tier, in_subtree
from schemas.homefiles import make_folder, write_atomic
from schemas.layout import network_index_file, walk_file
from warehouse.network import KnownStats, RebuiltNode, publish_origin, sync_subtree
from warehouse.network import rebuild_node as warehouse_rebuild_node
from warehouse.node import layout_digest
from warehouse.skipped import SkippedNode, raise_for_skipped
from warehouse.stats import NodeStats
from warehouse.stores import node_path, store_of
from warehouse.walkstore import known_totals, write_walk

log = logging.getLogger(__name__)


def sync_district(home: Path, code: str, on_node: Any = None) -> list[dict[str, Any]]:
    """Sync one district's subtree from the city and publish its extracts; returns node stats.

    A node that cannot be opened (locked, damaged) is skipped and the others are synced; then this
    raises naming it (transient if only locked, terminal if damaged), so the district's task fails."""
    stats, skipped = sync_district_report(home, code, on_node)
    raise_for_skipped(skipped, f"every other node of district {code} is synced and published")
    return stats


def indexed_stats(home: Path) -> KnownStats:
    """The stats the last network index gives a node whose file has not been written since that
    index was (None for any other node: it is counted again). The index is written after every
    node it lists, so a node file older than it holds what it says."""
    path = network_index_path(home)
    written = 0  # no index yet: every node is counted
    try:
        written = path.stat().st_mtime_ns
        index: dict[str, Any] = json.loads(path.read_text("utf-8"))
        known = {n["code"]: NodeStats(n["code"], n["tier"], dict(n["rows"]), dict(n["checksums"]))
                 for n in index["nodes"]}
    except (OSError, ValueError, KeyError, TypeError):
        known = {}

    def lookup(code: str) -> NodeStats | None:
        try:
            fresh = node_path(home, code).stat().st_mtime_ns < written
        except OSError:
            return None
        return known.get(code) if fresh else None
    return lookup


def sync_district_report(home: Path, code: str, on_node: Any = None) -> tuple[list[dict[str, Any]], list[SkippedNode]]:
    """sync_district without raising: the node stats and the nodes skipped (module level: worker
    processes call it). The reconciliation done on the walk, and the totals it used, are written
    to the district's walk record (the next walk takes an unchanged node's totals from there)."""
    path, digest = walk_file(home, code), layout_digest(contracts())
    report = sync_subtree(home, registry(), code, contracts(), on_node=on_node,
                          known=known_totals(path, home, digest))
    if report.checker is not None:
        stamps = {code: stamp for code, stamp in report.stamps.items() if stamp is not None}
        write_walk(path, digest, report.checks, report.checker.cache, stamps)
    return [s.__dict__ for s in report.nodes], report.skipped


def _sync_all(home: Path, codes: list[str], on_node: Any, workers: int) -> tuple[list[list[dict[str, Any]]],
                                                                                  list[SkippedNode]]:
    """Sync these districts (in `workers` processes when more than one); every one is walked even
    when nodes of another were skipped."""
    if workers <= 1:
        parts = [sync_district_report(home, code, on_node) for code in codes]
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            parts = list(pool.map(sync_district_report, [home] * len(codes), codes, [on_node] * len(codes)))
    return [stats for stats, _ in parts], [s for _, skipped in parts for s in skipped]


def sync_districts(home: Path, codes: list[str], on_node: Any = None) -> list[list[dict[str, Any]]]:
    """Sync several districts' subtrees (`civicnet sync --district`), then raise naming the nodes
    skipped in any of them."""
    subtrees, skipped = _sync_all(home, codes, on_node, workers=1)
    raise_for_skipped(skipped, f"every other node of {', '.join(codes)} is synced and published")
    return subtrees


def rebuild_node(home: Path, code: str) -> RebuiltNode:
    """Move a damaged node's file aside and sync a new one from its nearest healthy ancestor."""
    registry().get(code)  # an unknown code is refused before any file is touched
    return warehouse_rebuild_node(home, code, contracts(), dt.datetime.now(dt.UTC))


def publish_city(home: Path) -> dict[str, Any]:
    """Publish the city node's extract."""
    stats: NodeStats = publish_origin(home, city_code(), contracts(), known=indexed_stats(home))
    return stats.__dict__


def network_index_path(home: Path) -> Path:
    """Where the network index is: <home>/extracts/network.json."""
    return network_index_file(home)


def write_network_index(home: Path, subtrees: list[list[dict[str, Any]]], city: dict[str, Any]) -> str:
    """Write extracts/network.json: every node, its extract (relative to the home, so a moved or
    copied home still reads) and its rows, then mirror the changed extracts and the index to the
    releases store if the home has one (civicnet.pipeline.storage); returns the path."""
    from warehouse.extract import extract_path

    nodes = [city] + [n for subtree in subtrees for n in subtree]
    index = {"vintage": VINTAGE, "nodes": [
        {"tier": n["tier"], "code": n["code"], "extract": extract_path(Path(), n["code"]).as_posix(),
         "rows": n["rows"], "checksums": n["checksums"]}
        for n in sorted(nodes, key=lambda n: n["code"])]}
    path = network_index_path(home)
    text = json.dumps(index, ensure_ascii=False, indent=1)
    if _current_text(path) != text:  # an index that says the same is left as it is
        make_folder(path.parent)
        write_atomic(path, text)
    from civicnet.pipeline.storage import mirror_releases

    mirror_releases(home, [extract_path(home, n["code"]) for n in nodes])  # server mode: to the releases store
    return str(path)


def _current_text(path: Path) -> str | None:
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class IndexedNode:
    """One node of the network index: where it is in the tree, its extract in this home, its rows."""

    tier: Tier
    code: str
    extract: Path
    rows: Mapping[str, int]  # dataset -> rows in the node
    store: str = ""  # where the node's data of record is (warehouse.stores: a DuckDB file, or a server schema)

    def to_dict(self) -> dict[str, Any]:
        """`civicnet status --json`'s form."""
        return {"tier": self.tier, "code": self.code, "store": self.store, "extract": str(self.extract),
                "rows": dict(self.rows)}


@dataclass(frozen=True)
class NetworkIndex:
    """extracts/network.json as read in one home: the division vintage and every node, by code."""

    vintage: int
    nodes: tuple[IndexedNode, ...]


def read_network_index(home: Path) -> NetworkIndex:
    """extracts/network.json with each node's extract as a path in this home (an empty index if
    no network run wrote one yet).

    The path is resolved in the home it is read from, by the node's code (where
    warehouse.extract puts every extract): the stored relative path says the same to a person
    reading the file, and an index written before paths were relative, naming the home it was
    written in, still reads after that home moved."""
    from warehouse.extract import extract_path

    path = network_index_path(home)
    if not path.exists():
        return NetworkIndex(VINTAGE, ())
    index: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return NetworkIndex(int(index["vintage"]), tuple(
        IndexedNode(n["tier"], n["code"], extract_path(home, n["code"]), dict(n["rows"]), store_of(home, n["code"]).url)
        for n in index["nodes"]))


def sync_network(home: Path, on_node: Any = None, workers: int = 1, reconcile: bool = True) -> str:
    """Sync every district's subtree (each node checked against its parent on the way), publish
    the city, write the index, then (unless `reconcile` is false: the benchmark times it apart)
    record the reconciliation those checks make (the network DAG's reconcile step).

    With `workers` > 1 districts sync in that many processes, as the DAG's mapped tasks do
    (`on_node` must then be a picklable module-level function). Nodes that cannot be opened are
    skipped; after everything else is done this raises naming them (see sync_district)."""
    reg = registry()
    # Largest subtrees first, so no big district is left to run alone at the end.
    codes = sorted(districts(), key=lambda c: -sum(1 for d in reg.divisions if in_subtree(d, c)))
    subtrees, skipped = _sync_all(home, codes, on_node, workers)
    index = write_network_index(home, subtrees, publish_city(home))
    if reconcile:
        from civicnet.pipeline.verify import record_walks  # civicnet.pipeline.verify imports this module

        record_walks(home)  # the checks made on the walks: the result is in quality/reconciliation.json
    raise_for_skipped(skipped, "every other node is synced and published, and the index written")
    return index
