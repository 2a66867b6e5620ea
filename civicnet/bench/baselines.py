"""The two hand-written baselines: the plainest DuckDB code that fills every node file, no checks,
history or logs. Both read the files the pipeline reads, and take only the residents drops they
have not seen yet (their names kept in <home>/seen.json); the first run also loads the division
reference and the facility table.

  fanout  every node filtered from the whole city table (today's baseline);
  relay   the city table written once, each district filled from the city, each street from its
          district, each community from its street.
A change drop is applied as delete-by-citizen-ID then insert, in every node.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

from schemas.divisions import Division, Registry, load_registry, subtree_prefix
from schemas.layout import node_file
from schemas.sql import quote_literal

ID, CODE = "公民身份号码", "社区代码"
# table → its division column, as the department files name it
TABLES = {"residents": CODE, "facilities": "comm_code", "divisions": "code"}
ATTACH = "ATTACH {path} AS {alias} (STORAGE_VERSION 'v1.4.0')"


def read_residents(path: Path) -> pa.Table:
    return pacsv.read_csv(path, read_options=pacsv.ReadOptions(encoding="gb18030"),
                          convert_options=pacsv.ConvertOptions(column_types={ID: "string", CODE: "string"}))


def _new_drops(home: Path, feeds: Path) -> tuple[list[Path], bool]:
    """Residents drops not seen yet, in name order, and whether this is the first run."""
    state = home / "seen.json"
    first = not state.exists()
    seen = set() if first else set(json.loads(state.read_text()))
    drops = sorted((feeds / "public_security" / "residents").glob("*.csv"))
    return [d for d in drops if d.name not in seen], first


def _mark_seen(home: Path, drops: list[Path]) -> None:
    state = home / "seen.json"
    seen = json.loads(state.read_text()) if state.exists() else []
    state.write_text(json.dumps(sorted({*seen, *(d.name for d in drops)})))


def _load_reference(con: duckdb.DuckDBPyConnection, feeds: Path) -> None:
    """Tables f (facilities) and d (divisions) from their department files."""
    # DuckDB's sqlite extension cannot be downloaded here: a plain sqlite3 select instead.
    with sqlite3.connect(feeds / "civil_affairs" / "facilities.sqlite") as db:
        cur = db.execute("SELECT * FROM community_facility")
        names = [d[0] for d in cur.description]
        con.register("fsrc", pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in cur]))
    con.execute("CREATE TABLE facilities AS SELECT * FROM fsrc")
    divisions = quote_literal(f"{feeds}/statistics/divisions/*.csv")
    con.execute(f"CREATE TABLE divisions AS SELECT * FROM read_csv({divisions}, all_varchar=true)")


def _drops(con: duckdb.DuckDBPyConnection, drops: list[Path], first: bool) -> Iterator[bool]:
    """Load each drop as table `residents`; yields whether it is the initial (create) or a change."""
    for i, drop in enumerate(drops):
        con.execute("DROP TABLE IF EXISTS residents")
        con.register("src", read_residents(drop))
        con.execute("CREATE TABLE residents AS SELECT * FROM src")
        con.unregister("src")
        yield first and i == 0


def _attach(con: duckdb.DuckDBPyConnection, home: Path, code: str, alias: str) -> None:
    path = node_file(home, code)
    path.parent.mkdir(parents=True, exist_ok=True)
    con.execute(ATTACH.format(path=quote_literal(str(path)), alias=alias))


def _fill(con: duckdb.DuckDBPyConnection, node: str, source: str, code: str, create: bool) -> None:
    """Node `node` gets the rows of `source` (a city table or a parent node) in `code`'s subtree."""
    p = quote_literal(subtree_prefix(code))
    if create:
        for table, column in TABLES.items():
            con.execute(f"CREATE TABLE {node}.{table} AS SELECT * FROM {source}{table} "
                        f"WHERE starts_with({column}, {p})")
        return
    con.execute(f"DELETE FROM {node}.residents WHERE {ID} IN (SELECT {ID} FROM main.residents)")
    con.execute(f"INSERT INTO {node}.residents SELECT * FROM {source}residents "
                f"WHERE starts_with({CODE}, {p}) AND {ID} IN (SELECT {ID} FROM main.residents)")


def fanout(home: Path, feeds: Path) -> dict[str, float]:
    """Every node filtered from the whole city's tables."""
    drops, first = _new_drops(home, feeds)
    con = duckdb.connect()
    if first:
        _load_reference(con, feeds)
    for create in _drops(con, drops, first):
        for div in load_registry().walk():
            _attach(con, home, div.code, "n")
            _fill(con, "n", "main.", div.code, create)
            con.execute("DETACH n")
    con.close()
    _mark_seen(home, drops)
    return {}


def relay(home: Path, feeds: Path) -> dict[str, float]:
    """The city node written once from the files, every other node from its parent node."""
    drops, first = _new_drops(home, feeds)
    con = duckdb.connect()
    if first:
        _load_reference(con, feeds)
    registry = load_registry()
    city = registry.by_tier("city")[0]
    for create in _drops(con, drops, first):
        _attach(con, home, city.code, "t0")
        if create:
            _fill(con, "t0", "main.", city.code, create=True)
        else:
            con.execute(f"DELETE FROM t0.residents WHERE {ID} IN (SELECT {ID} FROM main.residents)")
            con.execute("INSERT INTO t0.residents SELECT * FROM main.residents")
        for child in registry.children(city.code):
            _relay_down(con, home, registry, child, 1, create)
        con.execute("DETACH t0")
    con.close()
    _mark_seen(home, drops)
    return {}


def _relay_down(con: duckdb.DuckDBPyConnection, home: Path, registry: Registry, div: Division,
                depth: int, create: bool) -> None:
    """Fill `div` from its parent (attached as t<depth-1>), then its children from it."""
    alias = f"t{depth}"
    _attach(con, home, div.code, alias)
    _fill(con, alias, f"t{depth - 1}.", div.code, create)
    for child in registry.children(div.code):
        _relay_down(con, home, registry, child, depth + 1, create)
    con.execute(f"DETACH {alias}")


SIDES = {"fanout": fanout, "relay": relay}
