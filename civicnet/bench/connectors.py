"""Connector throughput, each path next to the plainest code that reads the same data in the same run.

- files: the residents drop of the benchmark (GB18030 CSV) through `FilesConnector` and the landing
  decode, against `pyarrow.csv.read_csv` on the same file;
- SQL: the same residents copied into a PostgreSQL table, through `SqlConnector` (chunked
  streaming into Parquet, then decoded as landing does), against a plain SQLAlchemy select;
- REST: station-shaped records served by the demo API on loopback, through `RestConnector`
  (cursor pagination, incremental state, key dedupe, then the JSONL decode), against
  `requests` + `.json()` over the same pages. The Python test server is slow for millions of
  records, so this path uses `REST_RECORDS` records, not the whole drop.

The file and SQL paths read the first `SAMPLE_ROWS` rows of the drop (all of it up to scale 0.1).
Rows per second are rows delivered as an Arrow table (the connector side) or as Python rows
(the baseline side). Both sides run twice per path, alternating, in one process; the best time
of each is reported.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import requests
import sqlalchemy as sa

from connectors.feeds import FilesSource, Pagination, RestCursor, RestSource, SqlSource
from connectors.parse import read_payload
from connectors.secrets import env_name

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TABLE = "bench_residents"
REST_RECORDS = 200_000
# Throughput is rows per second: the file and SQL paths read at most this many rows of the drop (the
# whole drop at scale 0.1), so the plain baselines — whole tables, `fetchall` into Python tuples —
# fit in memory at scale 1.0 too (17.5 M rows as Python tuples do not fit in 24 GiB).
SAMPLE_ROWS = 1_749_439
PAGE = 1000


def _timed(fn: Callable[[], int]) -> dict[str, float]:
    start = time.perf_counter()
    rows = fn()
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds if seconds else 0.0}


def _pair(plain: Callable[[], int], civic: Callable[[], int], rounds: int = 2) -> dict[str, dict[str, float]]:
    """Both sides, alternating, `rounds` times each; the best time of each (caches warm for both)."""
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "civicnet": []}
    for _ in range(rounds):
        runs["plain"].append(_timed(plain))
        runs["civicnet"].append(_timed(civic))
    return {side: min(r, key=lambda t: t["seconds"]) for side, r in runs.items()}


def _connector_rows(connector: Any) -> int:
    """Every payload of one pull, decoded as landing decodes it; the row count."""
    return sum(read_payload(p.data, p.media_type, p.encoding, p.name).num_rows for p in connector.fetch({}))


def bench_files(drop: Path) -> dict[str, Any]:
    """The residents drop through the file connector, and through pyarrow's CSV reader."""
    from connectors.files import FilesConnector

    source = FilesSource(kind="files", path=str(drop.parent), pattern=drop.name, encoding="gb18030",
                         settle_seconds=0)
    sides = _pair(lambda: pacsv.read_csv(drop, read_options=pacsv.ReadOptions(encoding="gb18030")).num_rows,
                  lambda: _connector_rows(FilesConnector(source, ("公民身份号码",))))
    return {"path": "files (GB18030 CSV)", "baseline": "pyarrow.csv.read_csv"} | sides


def load_postgres(drop: Path) -> int:
    """Copy the residents drop into PostgreSQL (text columns, as the department keeps them)."""
    import psycopg

    text = drop.read_bytes().decode("gb18030")
    header = text.split("\n", 1)[0].split(",")
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} ({', '.join(f'c{i} text' for i in range(len(header)))})")
        with conn.cursor().copy(f"COPY {TABLE} FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
            copy.write(text)
        (count,) = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone() or (0,)
    return int(count)


def bench_sql() -> dict[str, Any]:
    """The PostgreSQL table through the SQL connector, and through a plain SQLAlchemy select."""
    from connectors.sql import SqlConnector

    def plain_select() -> int:
        engine = sa.create_engine(PG_URL)
        try:
            with engine.connect() as conn:
                table = sa.Table(TABLE, sa.MetaData(), autoload_with=conn)
                return len(conn.execute(sa.select(table)).fetchall())
        finally:
            engine.dispose()

    source = SqlSource(kind="sql", url=PG_URL, table=TABLE)
    sides = _pair(plain_select, lambda: _connector_rows(SqlConnector(source, ("c0",))))
    return {"path": "SQL (PostgreSQL)", "baseline": "SQLAlchemy select().fetchall()"} | sides


def write_stations(path: Path, n: int) -> None:
    """`n` station-shaped records for the REST path, updated over a month."""
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            stamp = f"2021-06-{1 + i % 28:02d}T{i % 24:02d}:00:00+08:00"
            out.write(json.dumps({"station_no": f"B{i:09d}", "community_code": "440304001018",
                                  "station_name": f"社康站{i}", "kind": "社康站", "doctors": i % 40,
                                  "nurses": i % 30, "opened": "2015-03-01", "updated_at": stamp,
                                  "deleted": False}, ensure_ascii=False) + "\n")


def bench_rest(folder: Path) -> dict[str, Any]:
    """Records from the demo API through the REST connector, and through requests + json."""
    from civicnet.demo.departments.api import PATH, serve_api
    from connectors.rest import RestConnector

    records = folder / "stations.jsonl"
    write_stations(records, REST_RECORDS)
    token = os.urandom(16).hex()
    with serve_api(records, token) as api:
        api.load()  # both sides page a sorted register; the sort is not what is measured

        def plain_get() -> int:
            rows, params = 0, {"page_size": str(PAGE)}
            with requests.Session() as session:
                while True:
                    body = session.get(api.url + PATH, params=params, headers={"Authorization": f"Bearer {token}"},
                                       timeout=60).json()
                    rows += len(body["data"])
                    if not body["next_cursor"]:
                        return rows
                    params = {"page_size": str(PAGE), "cursor": body["next_cursor"]}

        host, port = api.url.removeprefix("http://").split(":")
        os.environ[env_name("bench_api")] = json.dumps(
            {"conn_type": "http", "host": host, "port": int(port), "extra": {"token": token}})
        source = RestSource(kind="rest", conn_id="bench_api", path=PATH,
                            pagination=Pagination(style="cursor", size=PAGE), cursor=RestCursor())
        sides = _pair(plain_get, lambda: _connector_rows(RestConnector(source, ("station_no",))))
    return {"path": f"REST ({REST_RECORDS:,} records)", "baseline": "requests + .json()"} | sides


def warm_up() -> None:
    """Import what every side imports lazily (pandas, DuckDB, openpyxl), so neither side pays a
    one-off per-process import cost inside its timing."""
    from schemas.media import JSONL, PARQUET

    read_payload(b'{"a": 1}\n', JSONL, None, "warm.jsonl").to_pandas()
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"a": ["1"]}), sink)
    read_payload(sink.getvalue().to_pybytes(), PARQUET, None, "warm.parquet")


def sample(drop: Path, folder: Path, rows: int = SAMPLE_ROWS) -> Path:
    """The drop itself if it has at most `rows` rows, else a file of its header and first `rows`
    rows in `folder` (copied line by line: GB18030 never uses the newline byte inside a character)."""
    target = folder / drop.name
    folder.mkdir(parents=True, exist_ok=True)
    with drop.open("rb") as src, target.open("wb") as dst:
        for n, line in enumerate(src):
            if n > rows:
                return target
            dst.write(line)
    target.unlink()
    return drop


def run(out: Path) -> list[dict[str, Any]]:
    """Every path; the residents drop comes from the benchmark's prepared feeds under `out`."""
    warm_up()
    full = out / "feeds" / "public_security" / "residents" / "residents_0001_initial.csv"
    drop = sample(full, out / ".connector-sample")
    results = [bench_files(drop)]
    load_postgres(drop)
    try:
        results.append(bench_sql())
    finally:
        with sa.create_engine(PG_URL).begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {TABLE}"))
    results.append(bench_rest(out))
    return results


def render(results: list[dict[str, Any]]) -> str:
    """The throughput table with civicnet/plain ratios (time ratio: above 1 means civicnet is slower)."""
    lines = [f"{'connector path':<26} {'rows':>10} {'civicnet rows/s':>16} {'plain rows/s':>13} {'time ratio':>11}  "
             "plain code"]
    for r in results:
        c, p = r["civicnet"], r["plain"]
        lines.append(f"{r['path']:<26} {c['rows']:>10,} {c['rows_per_s']:>16,.0f} {p['rows_per_s']:>13,.0f} "
                     f"{c['seconds'] / p['seconds']:>11.2f}  {r['baseline']}")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    home = Path(sys.argv[1] if len(sys.argv) > 1 else "bench-out").resolve()
    found = run(home)
    print(render(found))
    (home / "bench_connectors.json").write_text(json.dumps(found, indent=1))
