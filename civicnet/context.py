"""What every part of civicnet needs: the division vintage in force, its registry, the dataset
contracts, the feed configs and the city node.

Read here once, passed down: connectors, quality and warehouse take these as values.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import duckdb

from connectors.feeds import Feed, FeedConfigError, load_feeds
from quality.conform import SourceMapping
from schemas.contract import Contract, load_contracts
from schemas.divisions import Registry, load_registry
from warehouse.node import attach, connect, ensure_node
from warehouse.stores import Replica, store_of

VINTAGE = 2020


@cache
def registry() -> Registry:
    """The division registry the network is built on (immutable: read once per process)."""
    return load_registry(VINTAGE)


def contracts() -> list[Contract]:
    """Every shipped contract, in a stable order."""
    return list(load_contracts().values())


def feed(slug: str) -> Feed:
    """The feed config with this slug."""
    feeds = load_feeds()
    if slug not in feeds:
        raise FeedConfigError(f"no feed {slug!r}; known feeds: {', '.join(sorted(feeds))} "
                              "(`civicnet feeds` lists them with their departments and schedules)")
    return feeds[slug]


def city_code() -> str:
    """The root of the network."""
    return registry().root().code


def open_city(home: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection with the city node attached as `city` (created if new). A city kept on a
    server is attached as its local copy, brought level with the server first; a write to it
    passes `city_replica(home)` to the function that writes."""
    store = store_of(home, city_code())
    if not store.ready(contracts()):
        read_only = False
    path = store.local if read_only else store.prepare(contracts())
    con = connect()
    attach(con, path, "city", read_only=read_only)
    if not read_only:
        ensure_node(con, "city", city_code(), contracts())
    return con


def city_replica(home: Path) -> Replica | None:
    """Where a write to the city must also go before it commits (None: the city is a DuckDB file)."""
    return store_of(home, city_code()).replica()


def districts() -> list[str]:
    """The codes of the districts: one sync task each."""
    return [d.code for d in registry().by_tier("district")]


def source_mapping(f: Feed) -> SourceMapping:
    """How a feed's columns become its contract's fields."""
    return SourceMapping(f.slug, f.fields, f.values, f.dates, f.constants, tuple(f.ignore), f.deleted)
