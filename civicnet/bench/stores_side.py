"""The node stores side by side in `make bench`: the same pipeline, the same drops, once with every
node a DuckDB file (the `pipeline` side) and once with every node a schema on the machine's
PostgreSQL (`pipeline_pg`, its home `<out>/pipeline_pg`, its database made anew each run), for the
full load and the 1 % change (issue 12). The invariants are checked on both homes.

And the transport between the engines, measured on the city's own residents: the ADBC PostgreSQL
driver (Arrow both ways: `adbc_ingest`, `fetch_arrow_table`) against psycopg's COPY with the
Arrow table written as CSV by pyarrow (the fastest way psycopg has to move many rows), each way,
into a temporary table like the one a push fills.
"""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from schemas.layout import feeds_folder

SIDE, HOME = "pipeline_pg", "pipeline_pg"
CASES = ("full", "change1")  # the cases run on the server home too
DEFAULT_SERVER = "postgresql://127.0.0.1"
DATABASE = "civicnet_bench_nodes"
CITY = "440300000000"
TRANSPORT_ROWS = 1_000_000


def server_home(out: Path) -> Path:
    return out / HOME


def _admin(server: str) -> Any:
    import psycopg

    return psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=10)


def recreate_database(server: str, name: str) -> str:
    """An empty database `name` on the server (dropped first if a run before left it); its URL."""
    from psycopg import sql

    with _admin(server) as con:
        con.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"{server}/{name}"


def prepare_server_home(out: Path, server: str = DEFAULT_SERVER) -> str:
    """The server home: the pipeline home's feeds as prepared (the initial drops), every node mapped
    to a fresh database; returns that database's URL."""
    from civicnet import context  # the parent only: no child of another side pays for these imports
    from warehouse import pgnode
    from warehouse.stores import set_store

    url = recreate_database(server, DATABASE)
    pgnode.forget_connection(url)  # a connection this process kept to the database dropped just now
    home = server_home(out)
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(feeds_folder(out / "pipeline"), feeds_folder(home))
    set_store(home, CITY, url, context.contracts())
    return url


def bring_drop(out: Path, drop: Path) -> None:
    """A case's drop into the server home's feeds too (the same file the pipeline side reads)."""
    target = feeds_folder(server_home(out)) / drop.relative_to(feeds_folder(out / "pipeline"))
    shutil.copy(drop, target)


def city_residents(home: Path, rows: int = TRANSPORT_ROWS) -> pa.Table:
    """Up to `rows` of the city's residents as they travel to a server node (JSON as text)."""
    import duckdb

    from warehouse import pgnode
    from warehouse.stores import store_of

    node = store_of(home, CITY).local
    with duckdb.connect(str(node), read_only=True) as con:
        shape = next(s for s in pgnode.shapes(con, node.stem) if s.table == "residents")
        return con.sql(f"SELECT {shape.duck_select(node.stem)} FROM residents LIMIT {rows}").to_arrow_table()


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def transport(table: pa.Table, url: str) -> dict[str, Any]:
    """Seconds to send `table` to a temporary table and to read it back, ADBC vs psycopg COPY (CSV
    written and read by pyarrow), on one connection each; both read back every row."""
    import adbc_driver_postgresql.dbapi as pgdb
    import psycopg

    columns = ", ".join(f'"{f.name}" {"bigint" if pa.types.is_integer(f.type) else "text"}' for f in table.schema)
    figures: dict[str, Any] = {"rows": table.num_rows, "columns": table.num_columns}
    with pgdb.connect(url) as con, con.cursor() as cur:
        figures["adbc_write_s"] = _timed(lambda: cur.adbc_ingest("_bench_rows", table, mode="replace", temporary=True))

        def adbc_read() -> None:
            cur.execute("SELECT * FROM _bench_rows")
            assert cur.fetch_arrow_table().num_rows == table.num_rows

        figures["adbc_read_s"] = _timed(adbc_read)
        con.rollback()
    with psycopg.connect(url) as con, con.cursor() as cur:
        cur.execute(f"CREATE TEMPORARY TABLE _bench_rows ({columns})")

        def copy_write() -> None:
            buffer = io.BytesIO()
            pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False))
            with cur.copy("COPY _bench_rows FROM STDIN (FORMAT csv)") as copy:
                copy.write(buffer.getvalue())

        def copy_read() -> None:
            buffer = io.BytesIO()
            with cur.copy("COPY _bench_rows TO STDOUT (FORMAT csv)") as copy:
                for chunk in copy:
                    buffer.write(chunk)
            buffer.seek(0)
            read = pacsv.read_csv(buffer, read_options=pacsv.ReadOptions(column_names=table.schema.names),
                                  convert_options=pacsv.ConvertOptions(column_types=table.schema))
            assert read.num_rows == table.num_rows

        figures["copy_write_s"] = _timed(copy_write)
        figures["copy_read_s"] = _timed(copy_read)
        con.rollback()
    return figures


def render(results: dict[str, Any]) -> list[str]:
    """The side-by-side table: each case's seconds, sync, largest process and invariants on both."""
    lines = [f"{'case':<18} {'duckdb s':>9} {'postgresql s':>12} {'×':>5} {'sync duckdb':>11} {'sync pg':>8} "
             f"{'MiB duckdb':>10} {'MiB pg':>7}  invariants (duckdb, pg)"]
    for c in results["cases"]:
        s = c["sides"]
        if SIDE not in s:
            continue
        d, p = s["pipeline"], s[SIDE]
        held = (c.get("invariants") or {}).get("hold"), (c.get("invariants_pg") or {}).get("hold")
        lines.append(f"{c['title']:<18} {d['seconds']:>9.1f} {p['seconds']:>12.1f} {p['seconds'] / d['seconds']:>5.2f} "
                     f"{d['steps']['sync+publish']:>11.1f} {p['steps']['sync+publish']:>8.1f} "
                     f"{d['peak_largest_mib']:>10.0f} {p['peak_largest_mib']:>7.0f}  "
                     + ", ".join({True: "hold", False: "BROKEN", None: "—"}[h] for h in held))
    t = results.get("transport")
    if t:
        lines.append(f"transport, {t['rows']:,} residents ({t['columns']} columns) to a temporary table and back: "
                     f"ADBC write {t['adbc_write_s']:.2f} s, read {t['adbc_read_s']:.2f} s; psycopg COPY (pyarrow CSV) "
                     f"write {t['copy_write_s']:.2f} s, read {t['copy_read_s']:.2f} s")
    return lines
