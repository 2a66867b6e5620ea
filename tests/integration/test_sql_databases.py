"""The SQL connector against the machine's real PostgreSQL and MariaDB, and an SQLite file.

Every test creates its own uniquely named table and drops it. A server that does not answer fails the
test (never skips it): `make test` starts them through infra/services.sh.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import sqlite3
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from connectors.feeds import SqlSource
from connectors.payload import Payload
from connectors.sql import SqlConnector
from schemas.errors import TerminalError, TransientError

SERVERS = {"postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
           "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test"}
ENGINES = ["postgresql", "mariadb", "sqlite"]
SHANGHAI = ZoneInfo("Asia/Shanghai")
# department systems often store local wall-clock time without a zone: those columns must work too
START = dt.datetime(2021, 6, 1, 9, 0, tzinfo=SHANGHAI).replace(tzinfo=None)
HOUR = dt.timedelta(hours=1)


def reachable(url: str) -> sa.Engine:
    """An engine on a server that answers, or a failed test saying how to start it."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as err:
        pytest.fail(f"{url} is not reachable ({err.orig}); start the test services with infra/services.sh "
                    "(`make test` does)")
    return engine


@dataclass
class DeptTable:
    """A department's facility table in one engine, created for one test."""

    url: str
    engine: sa.Engine
    table: sa.Table

    def insert(self, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.table.insert(), rows)

    def update(self, fac_no: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.table.update().where(self.table.c.fac_no == fac_no).values(**values))

    def connector(self, **settings: Any) -> SqlConnector:
        return SqlConnector(SqlSource(kind="sql", url=self.url, table=self.table.name, **settings), ("fac_no",))


def make_row(i: int, **overrides: Any) -> dict[str, Any]:
    """Facility number i, edited i hours after the start."""
    row = {"fac_no": f"F{i:06d}", "comm_code": "440304001018", "area": Decimal("120.50") + i, "staff": i % 9,
           "open_date": dt.date(2008, 3, 1), "note": "图书馆𣵦", "updated_at": START + i * HOUR, "is_deleted": 0}
    return {**row, **overrides}


def facility_table(name: str, aware: bool = False) -> sa.Table:
    return sa.Table(
        name, sa.MetaData(),
        sa.Column("fac_no", sa.String(16), primary_key=True),
        sa.Column("comm_code", sa.String(12)),
        sa.Column("area", sa.Numeric(10, 2)),
        sa.Column("staff", sa.Integer),
        sa.Column("open_date", sa.Date),
        sa.Column("note", sa.Unicode(100)),
        sa.Column("updated_at", sa.DateTime(timezone=aware)),
        sa.Column("is_deleted", sa.Integer, nullable=False),
        mysql_charset="utf8mb4")


def engine_url(name: str, tmp_path: Path) -> str:
    if name == "sqlite":
        path = tmp_path / "department.sqlite"
        sqlite3.connect(path).close()
        return f"sqlite:///{path}"
    return SERVERS[name]


@pytest.fixture
def dept_factory(tmp_path: Path) -> Iterator[Any]:
    """Creates tables on demand (make(engine, aware=False)) and drops every one afterwards."""
    made: list[DeptTable] = []

    def make(name: str, aware: bool = False) -> DeptTable:
        url = engine_url(name, tmp_path)
        table = facility_table(f"fac_{uuid.uuid4().hex[:12]}", aware)
        dept = DeptTable(url, reachable(url), table)
        table.create(dept.engine)
        made.append(dept)
        return dept

    yield make
    for dept in made:
        dept.table.drop(dept.engine)
        dept.engine.dispose()


@pytest.fixture(params=ENGINES)
def dept(request: pytest.FixtureRequest, dept_factory: Any) -> DeptTable:
    table: DeptTable = dept_factory(request.param)
    return table


def pull(conn: SqlConnector, state: Mapping[str, Any]) -> tuple[list[dict[str, Any]], Mapping[str, Any]]:
    """Rows taken by one pull and the state to save (the old one when nothing came)."""
    payloads = list(conn.fetch(state))
    assert len(payloads) <= 1
    if not payloads:
        return [], state
    return rows_of(payloads[0]), json.loads(json.dumps(payloads[0].cursor))


def rows_of(payload: Payload) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(io.BytesIO(payload.data)).to_pylist()
    return rows


def test_snapshot_reads_every_row_as_text(dept: DeptTable) -> None:
    dept.insert([make_row(1), make_row(2, area=None, open_date=None, note=None, staff=None), make_row(3, note="")])
    (payload,) = dept.connector().fetch({})
    assert payload.name == f"{dept.table.name}.parquet"
    rows = rows_of(payload)
    assert rows[0] == {"fac_no": "F000001", "comm_code": "440304001018", "area": "121.50", "staff": "1",
                       "open_date": "2008-03-01", "note": "图书馆𣵦", "updated_at": "2021-06-01T10:00:00",
                       "is_deleted": "0"}
    assert rows[1] == {**rows[0], "fac_no": "F000002", "area": None, "staff": None, "open_date": None, "note": None,
                       "updated_at": "2021-06-01T11:00:00"}
    assert rows[2]["note"] == ""


def test_incremental_takes_new_rows_then_nothing_then_only_the_updated(dept: DeptTable) -> None:
    dept.insert([make_row(i) for i in range(5)])
    conn = dept.connector(cursor="updated_at", lag_seconds=3600)
    first, state = pull(conn, {})
    assert [r["fac_no"] for r in first] == [f"F{i:06d}" for i in range(5)]
    assert (state["watermark"], state["cursor_type"]) == ("2021-06-01T13:00:00", "datetime")
    assert pull(conn, state)[0] == []
    dept.update("F000001", area=Decimal("99.90"), updated_at=START + 10 * HOUR)
    dept.update("F000003", note="改建", updated_at=START + 11 * HOUR)
    changed, state = pull(conn, state)
    assert [(r["fac_no"], r["area"], r["note"]) for r in changed] == [("F000001", "99.90", "图书馆𣵦"),
                                                                      ("F000003", "123.50", "改建")]
    assert pull(conn, state)[0] == []


@pytest.mark.parametrize("engine_name,aware", [("postgresql", False), ("mariadb", False), ("sqlite", False),
                                               ("postgresql", True)],
                         ids=["postgresql", "mariadb", "sqlite", "postgresql-timestamptz"])
def test_late_commit_with_an_older_cursor_is_taken_exactly_once(dept_factory: Any, engine_name: str,
                                                                aware: bool) -> None:
    dept: DeptTable = dept_factory(engine_name, aware)
    start = START.replace(tzinfo=SHANGHAI) if aware else START
    dept.insert([make_row(i, updated_at=start + i * HOUR) for i in range(3)])
    conn = dept.connector(cursor="updated_at", lag_seconds=3600)
    _, state = pull(conn, {})
    watermark = state["watermark"]
    # a transaction that began earlier commits now, stamped 30 minutes before the watermark
    dept.insert([make_row(7, updated_at=start + 2 * HOUR - dt.timedelta(minutes=30))])
    taken, state = pull(conn, state)
    assert [r["fac_no"] for r in taken] == ["F000007"]
    assert state["watermark"] == watermark
    assert (dt.datetime.fromisoformat(watermark).tzinfo is not None) == aware
    assert pull(conn, state)[0] == []


def test_chunks_stream_into_several_row_groups(dept: DeptTable) -> None:
    total = 25_000
    dept.insert([make_row(i, updated_at=START + i * dt.timedelta(seconds=1)) for i in range(total)])
    (payload,) = dept.connector(chunk_rows=1000).fetch({})
    parquet = pq.ParquetFile(io.BytesIO(payload.data))
    assert parquet.metadata.num_rows == total
    assert parquet.num_row_groups == total // 1000  # one row group per streamed chunk
    fac_nos = parquet.read(columns=["fac_no"]).column("fac_no").to_pylist()
    assert fac_nos == [f"F{i:06d}" for i in range(total)]


def test_soft_deleted_row_arrives_with_its_marker(dept: DeptTable) -> None:
    dept.insert([make_row(i) for i in range(3)])
    conn = dept.connector(cursor="updated_at")
    _, state = pull(conn, {})
    dept.update("F000001", is_deleted=1, updated_at=START + 5 * HOUR)
    taken, _ = pull(conn, state)
    assert [(r["fac_no"], r["is_deleted"]) for r in taken] == [("F000001", "1")]


@pytest.mark.parametrize("engine_name,uri", [("postgresql", "postgresql://postgres@127.0.0.1:5432/test"),
                                             ("mariadb", "mysql://root@127.0.0.1:3306/test")],
                         ids=["postgresql", "mariadb"])
def test_conn_id_reads_through_the_airflow_connection(dept_factory: Any, monkeypatch: pytest.MonkeyPatch,
                                                      engine_name: str, uri: str) -> None:
    dept: DeptTable = dept_factory(engine_name)
    dept.insert([make_row(1)])
    monkeypatch.setenv("AIRFLOW_CONN_DEPT_DB", uri)
    conn = SqlConnector(SqlSource(kind="sql", conn_id="dept_db", table=dept.table.name), ("fac_no",))
    assert [r["fac_no"] for r in rows_of(next(conn.fetch({})))] == ["F000001"]


def test_mariadb_password_from_the_connection_is_used_and_never_shown(dept_factory: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    dept: DeptTable = dept_factory("mariadb")
    dept.insert([make_row(1)])
    with dept.engine.begin() as admin:
        admin.execute(sa.text("CREATE USER IF NOT EXISTS 'civicnet_reader'@'%' IDENTIFIED BY 'Right-pw-2021'"))
        admin.execute(sa.text("ALTER USER 'civicnet_reader'@'%' IDENTIFIED BY 'Right-pw-2021'"))
        admin.execute(sa.text("GRANT SELECT ON test.* TO 'civicnet_reader'@'%'"))
    source = SqlSource(kind="sql", conn_id="dept_db", table=dept.table.name)
    monkeypatch.setenv("AIRFLOW_CONN_DEPT_DB", "mysql://civicnet_reader:Right-pw-2021@127.0.0.1:3306/test")
    assert len(rows_of(next(SqlConnector(source, ("fac_no",)).fetch({})))) == 1
    monkeypatch.setenv("AIRFLOW_CONN_DEPT_DB", "mysql://civicnet_reader:Wrong-pw-2021@127.0.0.1:3306/test")
    with pytest.raises(TerminalError, match="bad credentials in connection 'dept_db'") as caught:
        next(SqlConnector(source, ("fac_no",)).fetch({}))
    assert "Wrong-pw-2021" not in str(caught.value)
    assert "Right-pw-2021" not in str(caught.value)
    assert not caught.value.transient


@pytest.mark.parametrize("uri", ["postgresql://no_such_role:Secret-9@127.0.0.1:5432/test",
                                 "mysql://no_such_user:Secret-9@127.0.0.1:3306/test"],
                         ids=["postgresql", "mariadb"])
def test_unknown_user_is_bad_credentials(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    reachable(SERVERS["postgresql" if uri.startswith("postgresql") else "mariadb"]).dispose()
    monkeypatch.setenv("AIRFLOW_CONN_DEPT_DB", uri)
    conn = SqlConnector(SqlSource(kind="sql", conn_id="dept_db", table="facility"), ("fac_no",))
    with pytest.raises(TerminalError, match="bad credentials in connection 'dept_db'") as caught:
        next(conn.fetch({}))
    assert "Secret-9" not in str(caught.value)


@pytest.mark.parametrize("url", ["postgresql+psycopg://postgres@127.0.0.1:1/test",
                                 "mysql+pymysql://root@127.0.0.1:1/test"], ids=["postgresql", "mariadb"])
def test_closed_port_is_transient(url: str) -> None:
    conn = SqlConnector(SqlSource(kind="sql", url=url, table="facility"), ("fac_no",))
    with pytest.raises(TransientError, match=r"127\.0\.0\.1:1/"):
        next(conn.fetch({}))


@pytest.mark.parametrize("url", ["postgresql+psycopg://postgres@127.0.0.1:5432/no_such_db",
                                 "mysql+pymysql://root@127.0.0.1:3306/no_such_db"], ids=["postgresql", "mariadb"])
def test_unknown_database_is_terminal(url: str) -> None:
    reachable(url.replace("no_such_db", "test")).dispose()
    conn = SqlConnector(SqlSource(kind="sql", url=url, table="facility"), ("fac_no",))
    with pytest.raises(TerminalError, match="unknown database"):
        next(conn.fetch({}))


def test_missing_table_is_terminal_and_names_table_and_place(dept: DeptTable) -> None:
    conn = SqlConnector(SqlSource(kind="sql", url=dept.url, table="no_such_facility"), ("fac_no",))
    with pytest.raises(TerminalError, match="table 'no_such_facility' does not exist") as caught:
        next(conn.fetch({}))
    place = {"postgresql": "127.0.0.1:5432/test", "mysql": "127.0.0.1:3306/test", "sqlite": "department.sqlite"}
    assert place[sa.make_url(dept.url).get_backend_name()] in str(caught.value)
