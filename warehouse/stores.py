"""Node stores: where each node's data of record lives, behind one protocol.

The node registry (`<home>/nodes/stores.json`, schemas.layout.node_stores_file) maps a subtree to a
store URL; a node's store is the entry of its nearest ancestor-or-self, and with no entry a DuckDB
file under the home (the embedded default):

    {"format": 1, "stores": {"440300000000": "postgresql://127.0.0.1/civicnet",
                             "440306000000": "postgresql://baoan-db.example/civicnet",
                             "440304000000": "duckdb"}}

Every part of civicnet works on a node through DuckDB, attached from one local file: the node
itself for a DuckDB store, or, for a server store, the node's **working copy**
(`<home>/mirrors/<tier>/<code>.duckdb`), a DuckDB file of the same layout that `ready` brings level
with the server before the node is read (rebuilt from the server whenever the server's version
differs from the copy's) and that every write goes through: a write runs in a DuckDB transaction
on the copy and, before that commits, `Replica.push` writes what it changed (warehouse.pgnode's
effects) to the server in one server transaction, batch and high-water mark included. The server
is the store of record: a lost or stale copy is rebuilt from it, a copy written by a transaction the
server never committed is never kept (its version no longer matches). So the same SQL, control
totals and checksums serve both engines, and extracts are published as DuckDB files from either.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import duckdb

from schemas.contract import Contract
from schemas.divisions import Tier, in_subtree, tier_of, validate_code
from schemas.errors import InvalidDivisionCodeError, TerminalError
from schemas.homefiles import atomic_target, copy_atomic, make_folder, write_atomic
from schemas.layout import mirror_file, node_file, node_stores_file
from warehouse import pgnode
from warehouse.node import (
    META_SCHEMA,
    NodeLayoutError,
    attach,
    connect,
    detach,
    layout_digest,
    node_errors,
    template_file,
)
from warehouse.pgnode import Effect, redacted

FILE_STORE = "duckdb"
SERVER_SCHEMES = ("postgresql", "postgres")
REGISTRY_FORMAT = 1


class NodeStoreConfigError(TerminalError):
    """The node registry names a store civicnet cannot use, or would strand a node's data."""


class Replica(Protocol):
    """Where a write to a node's DuckDB file must also go before it commits (a server store)."""

    def push(self, con: duckdb.DuckDBPyConnection, alias: str, effects: Sequence[Effect]) -> None: ...


class NodeStore(Protocol):
    """One node's store. `local` is the DuckDB file every reader and writer attaches."""

    @property
    def code(self) -> str: ...

    @property
    def url(self) -> str:
        """Where the node's data of record is, as status shows it (no password)."""
        ...

    @property
    def local(self) -> Path: ...

    def exists(self) -> bool: ...

    def ready(self, contracts: list[Contract], fresh: bool = False) -> bool:
        """Make `local` hold the node's current data (creating the node if `contracts` allow and it is
        new is `prepare`'s job: here a missing node stays missing); returns False if there is none."""
        ...

    def prepare(self, contracts: list[Contract]) -> Path:
        """Create the node if it does not exist yet; returns `local`, ready to attach for writing."""
        ...

    def replica(self) -> Replica | None: ...


@dataclass(frozen=True)
class FileStore:
    """The embedded default: the node is a DuckDB file under the home."""

    code: str
    local: Path

    @property
    def url(self) -> str:
        return f"{FILE_STORE}:{self.local}"

    def exists(self) -> bool:
        return self.local.exists()

    def ready(self, contracts: list[Contract], fresh: bool = False) -> bool:
        return self.local.exists()

    def prepare(self, contracts: list[Contract]) -> Path:
        if not self.local.exists():
            with node_errors(self.local):
                copy_atomic(template_file(self.local.parent.parent, tier_of(self.code), contracts), self.local)
        return self.local

    def replica(self) -> Replica | None:
        return None


MIRROR_TABLE = f"{META_SCHEMA}.mirror"  # in a working copy only: the server version it holds


def _copy_version(con: duckdb.DuckDBPyConnection, alias: str) -> int | None:
    try:
        row = con.execute(f'SELECT max(version) FROM "{alias}"."{META_SCHEMA}"."mirror"').fetchone()
    except duckdb.CatalogException:
        return None
    return None if row is None or row[0] is None else int(row[0])


@dataclass(frozen=True)
class ServerStore:
    """A node kept in its own schema on a PostgreSQL server, worked on through its local copy."""

    code: str
    server: str  # postgresql://host[:port]/database
    local: Path

    @property
    def url(self) -> str:
        return f"{redacted(self.server)}#{pgnode.schema_name(self.code)}"

    def exists(self) -> bool:
        return pgnode.node_row(self.server, self.code) is not None

    def _shapes(self, contracts: list[Contract]) -> list[pgnode.Shape]:
        return _template_shapes(template_file(self.local.parent.parent, tier_of(self.code), contracts))

    def copy_version(self) -> int | None:
        """The server version the local copy holds (None: no copy, or not one of this store)."""
        if not self.local.exists() or self.local.with_name(self.local.name + ".wal").exists():
            return None  # a copy left with a write-ahead log by a killed write may hold what the server lacks
        con = _probe()
        with node_errors(self.local):
            attach(con, self.local, "c", read_only=True)
        try:
            return _copy_version(con, "c")
        finally:
            detach(con, "c")

    def ready(self, contracts: list[Contract], fresh: bool = False) -> bool:
        row = pgnode.node_row(self.server, self.code)
        if row is None:
            return False
        _code, layout, version = row
        digest = layout_digest(contracts)
        if layout != digest:
            raise NodeLayoutError(f"node {self.code} in {self.url} was built with table layout {layout}, this "
                                  f"civicnet writes {digest}; rebuild it (drop its schema and sync it again)")
        if fresh or self.copy_version() != version:
            self._rebuild(contracts)
        return True

    def _rebuild(self, contracts: list[Contract]) -> None:
        """A new local copy of the whole node, streamed from the server (replaced in one rename)."""
        shapes = self._shapes(contracts)
        template = template_file(self.local.parent.parent, tier_of(self.code), contracts)
        wal = self.local.with_name(self.local.name + ".wal")
        with node_errors(self.local), atomic_target(self.local) as tmp:
            copy_atomic(template, tmp)
            con = connect()
            try:
                attach(con, tmp, "c")
                con.execute("BEGIN TRANSACTION")
                version = pgnode.copy_to_duckdb(self.server, self.code, con, "c", shapes)
                _stamp_copy(con, "c", version)
                con.execute("COMMIT")
                detach(con, "c")
            finally:
                con.close()
            if wal.exists():
                wal.unlink()  # the old copy's log: never to be replayed onto the new file

    def prepare(self, contracts: list[Contract]) -> Path:
        if not self.ready(contracts):
            tier = tier_of(self.code)
            keys = {t: c.primary_key for c in contracts for t in (c.name, f"{c.name}_history")}
            pgnode.create_node(self.server, self.code, tier, layout_digest(contracts), self._shapes(contracts), keys)
            self._empty_copy(contracts)
        return self.local

    def _empty_copy(self, contracts: list[Contract]) -> None:
        """The local copy of a node just created on the server: its tier's copy template (version 0;
        its code is stamped by its first sync, as a new node file's is)."""
        folder = self.local.parent.parent
        with node_errors(self.local):
            copy_atomic(_copy_template(folder, tier_of(self.code), contracts), self.local)

    def replica(self) -> Replica | None:
        return _ServerReplica(self)


_shapes_cache: dict[Path, list[pgnode.Shape]] = {}
_probes: dict[int, duckdb.DuckDBPyConnection] = {}


def _probe() -> duckdb.DuckDBPyConnection:
    """This process's connection for small reads of local copies (a new connection costs tens of ms)."""
    con = _probes.get(os.getpid())
    if con is None:
        con = _probes[os.getpid()] = connect()
    return con


def _copy_template(folder: Path, tier: Tier, contracts: list[Contract]) -> Path:
    """A tier's template with the copy's version table at 0 (made once per layout, beside the template)."""
    template = template_file(folder, tier, contracts)
    path = template.with_name(template.name.replace(".template-", ".copy-template-"))
    if not path.exists():
        with node_errors(path), atomic_target(path) as tmp:
            copy_atomic(template, tmp)
            con = connect()
            try:
                attach(con, tmp, "c")
                _stamp_copy(con, "c", 0)
                detach(con, "c")
            finally:
                con.close()
    return path


def _template_shapes(template: Path) -> list[pgnode.Shape]:
    """The tables of a tier's template (read once per process: a template never changes)."""
    if template not in _shapes_cache:
        con = connect()
        try:
            attach(con, template, "t", read_only=True)
            _shapes_cache[template] = [s for s in pgnode.shapes(con, "t") if s.table != MIRROR_TABLE]
        finally:
            con.close()
    return _shapes_cache[template]


def _stamp_copy(con: duckdb.DuckDBPyConnection, alias: str, version: int) -> None:
    con.execute(f'CREATE TABLE IF NOT EXISTS "{alias}"."{META_SCHEMA}"."mirror" (version BIGINT)')
    con.execute(f'DELETE FROM "{alias}"."{META_SCHEMA}"."mirror"')
    con.execute(f'INSERT INTO "{alias}"."{META_SCHEMA}"."mirror" VALUES (?)', [version])


@dataclass(frozen=True)
class _ServerReplica:
    store: ServerStore

    def push(self, con: duckdb.DuckDBPyConnection, alias: str, effects: Sequence[Effect]) -> None:
        expected = _copy_version(con, alias)
        if expected is None:
            raise pgnode.ServerNodeChangedError(f"the local copy of node {self.store.code} has no server version: "
                                                "run again (it is rebuilt from the server)")
        shapes = [s for s in pgnode.shapes(con, alias) if s.table != MIRROR_TABLE]
        version = pgnode.apply_effects(self.store.server, self.store.code, expected, con, alias, effects, shapes)
        _stamp_copy(con, alias, version)


# --- the node registry -----------------------------------------------------------------------

_cache: dict[Path, tuple[int, dict[str, str]]] = {}


def read_registry(home: Path) -> dict[str, str]:
    """The registry's entries: subtree root code → store URL (empty: every node a DuckDB file)."""
    path = node_stores_file(home)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return {}
    cached = _cache.get(path)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    try:
        raw = json.loads(path.read_text("utf-8"))
        entries = {validate_code(str(k)): _checked_url(str(v)) for k, v in raw["stores"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, InvalidDivisionCodeError) as err:
        raise NodeStoreConfigError(f"{path} is not a node registry ({err}); fix it or write it again with "
                                   "`civicnet nodes set`") from err
    _cache[path] = (mtime, entries)
    return entries


def _checked_url(url: str) -> str:
    if url == FILE_STORE or url.split("://", 1)[0] in SERVER_SCHEMES:
        return url
    raise NodeStoreConfigError(f"node store {redacted(url)!r} is neither {FILE_STORE!r} nor a postgresql:// URL")


def store_url(home: Path, code: str) -> str:
    """The store of `code`: the entry of its nearest ancestor-or-self, else a DuckDB file."""
    return _resolve(read_registry(home), code)


_DEPTH: dict[Tier, int] = {"city": 0, "district": 1, "street": 2, "community": 3}


def store_of(home: Path, code: str) -> NodeStore:
    """The store of one node."""
    url = store_url(home, code)
    if url == FILE_STORE:
        return FileStore(code, node_file(home, code))
    return ServerStore(code, url, mirror_file(home, code))


def node_path(home: Path, code: str) -> Path:
    """The DuckDB file of one node that DuckDB attaches: the node itself, or a server node's copy."""
    return store_of(home, code).local


def set_store(home: Path, root: str, url: str, contracts: list[Contract]) -> dict[str, str]:
    """Map the subtree of `root` to `url` in the registry; refused where a node of that subtree
    already holds data in another store (moving a node between stores is not done by a setting)."""
    validate_code(root)
    url = _checked_url(url)
    if url != FILE_STORE:
        pgnode.ping(url)  # a store that cannot be reached is refused now, not at the next sync
    entries = dict(read_registry(home))
    before = {code: store_url(home, code) for code in _codes_under(home, root)}
    entries[root] = url
    path = node_stores_file(home)
    trial = {**entries}
    for code, old in before.items():
        new = _resolve(trial, code)
        if new != old and _holds_data(home, code, old, contracts):
            raise NodeStoreConfigError(
                f"node {code} holds data in {redacted(old)}: mapping it to {redacted(new)} would strand it; "
                "map the subtree before its nodes are first synced, or rebuild the home")
    make_folder(path.parent)
    write_atomic(path, json.dumps({"format": REGISTRY_FORMAT, "stores": entries}, indent=1, sort_keys=True) + "\n")
    _cache.pop(path, None)
    return entries


def _resolve(entries: dict[str, str], code: str) -> str:
    best = max((r for r in entries if in_subtree(code, r)), key=lambda r: _DEPTH[tier_of(r)], default=None)
    return entries[best] if best is not None else FILE_STORE


def _codes_under(home: Path, root: str) -> list[str]:
    """Codes of the nodes under `root` that have a local file (node or copy)."""
    found = []
    for folder in (node_file(home, root).parent.parent, mirror_file(home, root).parent.parent):
        if folder.exists():
            found += [p.name.split(".", 1)[0] for p in folder.glob("*/*.duckdb")]
    return sorted({c for c in found if c.isdigit() and len(c) == 12 and in_subtree(c, root)})


def _holds_data(home: Path, code: str, url: str, contracts: list[Contract]) -> bool:
    if url == FILE_STORE:
        return node_file(home, code).exists()
    return ServerStore(code, url, mirror_file(home, code)).exists()
