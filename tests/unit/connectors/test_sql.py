"""SQL connector on real SQLite department databases: snapshots, increments, names, URLs and errors."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from connectors.feeds import SqlSource
from connectors.parse import read_payload
from connectors.payload import Payload
from connectors.secrets import Connection
from connectors.sql import (
    SqlConnector,
    SqlCredentialsError,
    SqlSourceError,
    SqlUnavailableError,
    classify_error,
    connection_url,
)
from schemas.errors import TerminalError
from schemas.media import PARQUET

TABLE = "community_facility"
COLUMNS = "fac_no TEXT{pk}, comm_code TEXT, fac_type TEXT, area REAL, staff INTEGER, open_date TEXT, note TEXT, " \
          "updated_at TEXT, is_deleted INTEGER"
ROWS: list[tuple[Any, ...]] = [
    ("F440304001018001", "440304001018", "library", 120.0, 5, "2008-03-01", None, "2021-06-01T09:00:00+08:00", 0),
    ("F440304001018002", "440304001018", "police_office", 55.5, 0, None, "图书𣵦", "2021-06-01T10:00:00+08:00", 0),
    ("F440306017001001", "0440", "other", 1000, 7, "2010-01-01", "", "2021-06-01T11:00:00+08:00", 0),
]


def make_db(path: Path, rows: list[tuple[Any, ...]] = ROWS, primary_key: bool = True) -> str:
    """A department database file with one facilities table; returns its SQLAlchemy URL."""
    with sqlite3.connect(path) as con:
        con.execute(f"CREATE TABLE {TABLE} ({COLUMNS.format(pk=' PRIMARY KEY' if primary_key else '')})")
        con.executemany(f"INSERT INTO {TABLE} VALUES ({', '.join('?' * 9)})", rows)
    con.close()
    return f"sqlite:///{path}"


def execute(url: str, sql: str, params: tuple[Any, ...] = ()) -> None:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as con:
        con.execute(sql, params)
    con.close()


def connector(url: str | None = None, *, key: tuple[str, ...] = ("fac_no",), **settings: Any) -> SqlConnector:
    return SqlConnector(SqlSource(kind="sql", url=url, **{"table": TABLE, **settings}), key)


def fetch_one(url: str, **settings: Any) -> Payload:
    (payload,) = connector(url, **settings).fetch({})
    return payload


def rows_of(payload: Payload) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(pa.BufferReader(payload.data)).to_pylist()
    return rows


def pull(conn: SqlConnector, state: Mapping[str, Any]) -> tuple[list[dict[str, Any]], Mapping[str, Any]]:
    """Rows taken by one pull and the state to save (the old one when nothing came)."""
    payloads = list(conn.fetch(state))
    assert len(payloads) <= 1
    if not payloads:
        return [], state
    return rows_of(payloads[0]), json.loads(json.dumps(payloads[0].cursor))  # state must survive JSON


# --- snapshots ---------------------------------------------------------------------------------


def test_snapshot_is_one_parquet_payload_with_all_values_as_text(tmp_path: Path) -> None:
    payload = fetch_one(make_db(tmp_path / "facilities.sqlite"))
    assert payload.name == f"{TABLE}.parquet"
    assert payload.media_type == PARQUET
    assert payload.cursor == {}
    table = pq.read_table(pa.BufferReader(payload.data))
    assert table.column_names[:4] == ["fac_no", "comm_code", "fac_type", "area"]
    assert all(f.type == pa.string() for f in table.schema)
    assert table.to_pylist()[0] == {"fac_no": "F440304001018001", "comm_code": "440304001018",
                                    "fac_type": "library", "area": "120.0", "staff": "5", "open_date": "2008-03-01",
                                    "note": None, "updated_at": "2021-06-01T09:00:00+08:00", "is_deleted": "0"}
    assert table.column("comm_code").to_pylist()[2] == "0440"
    assert table.column("note").to_pylist() == [None, "图书𣵦", ""]


def test_payload_reads_back_through_parse_with_line_numbers(tmp_path: Path) -> None:
    payload = fetch_one(make_db(tmp_path / "facilities.sqlite"))
    table = read_payload(payload.data, payload.media_type, payload.encoding, payload.name)
    assert table.column("_line").to_pylist() == [1, 2, 3]


def test_identical_content_has_identical_bytes_whatever_the_insert_order(tmp_path: Path) -> None:
    first = fetch_one(make_db(tmp_path / "one.sqlite"))
    again = fetch_one(f"sqlite:///{tmp_path / 'one.sqlite'}")
    reordered = fetch_one(make_db(tmp_path / "two.sqlite", rows=[ROWS[2], ROWS[0], ROWS[1]]))
    no_key = fetch_one(make_db(tmp_path / "three.sqlite", rows=ROWS[::-1], primary_key=False))
    no_key_again = fetch_one(make_db(tmp_path / "four.sqlite", primary_key=False))
    assert first.content_hash == again.content_hash == reordered.content_hash
    assert no_key.content_hash == no_key_again.content_hash


def test_changed_content_has_another_hash(tmp_path: Path) -> None:
    before = fetch_one(make_db(tmp_path / "one.sqlite"))
    after = fetch_one(make_db(tmp_path / "two.sqlite", rows=[(*ROWS[0][:3], 121.0, *ROWS[0][4:]), *ROWS[1:]]))
    assert before.content_hash != after.content_hash


def test_empty_table_snapshot_is_an_empty_payload_with_the_columns(tmp_path: Path) -> None:
    table = pq.read_table(pa.BufferReader(fetch_one(make_db(tmp_path / "empty.sqlite", rows=[])).data))
    assert table.num_rows == 0
    assert table.column_names[0] == "fac_no"


def test_chunks_become_row_groups(tmp_path: Path) -> None:
    rows = [(f"F{i:05d}", *ROWS[0][1:]) for i in range(25)]
    payload = fetch_one(make_db(tmp_path / "many.sqlite", rows=rows), chunk_rows=10)
    assert pq.ParquetFile(pa.BufferReader(payload.data)).num_row_groups == 3
    assert [r["fac_no"] for r in rows_of(payload)] == [r[0] for r in rows]


# --- increments --------------------------------------------------------------------------------


def test_incremental_takes_only_new_and_changed_rows(tmp_path: Path) -> None:
    url = make_db(tmp_path / "facilities.sqlite")
    conn = connector(url, cursor="updated_at", lag_seconds=3600)
    first, state = pull(conn, {})
    assert [r["fac_no"] for r in first] == [r[0] for r in ROWS]
    assert state["watermark"] == "2021-06-01T11:00:00+08:00"
    assert state["cursor_type"] == "text"
    assert set(state["boundary"]) == {json.dumps([r[0]]) for r in ROWS[1:]}  # within one hour of the watermark
    assert pull(conn, state)[0] == []
    execute(url, f"UPDATE {TABLE} SET area = 130.0, updated_at = '2021-06-02T08:00:00+08:00' WHERE fac_no = ?",
            (ROWS[0][0],))
    changed, state = pull(conn, state)
    assert [(r["fac_no"], r["area"]) for r in changed] == [(ROWS[0][0], "130.0")]
    assert state["watermark"] == "2021-06-02T08:00:00+08:00"
    assert list(state["boundary"]) == [json.dumps([ROWS[0][0]])]
    assert pull(conn, state)[0] == []


def test_late_commit_with_an_older_cursor_inside_the_lag_is_taken_once(tmp_path: Path) -> None:
    url = make_db(tmp_path / "facilities.sqlite")
    conn = connector(url, cursor="updated_at", lag_seconds=3600)
    _, state = pull(conn, {})
    late = ("F440304001018009", "440304001018", "library", 100.0, 1, None, None, "2021-06-01T10:30:00+08:00", 0)
    execute(url, f"INSERT INTO {TABLE} VALUES ({', '.join('?' * 9)})", late)
    taken, state = pull(conn, state)
    assert [r["fac_no"] for r in taken] == [late[0]]
    assert state["watermark"] == "2021-06-01T11:00:00+08:00"
    assert pull(conn, state)[0] == []


def test_late_commit_beyond_the_lag_is_missed(tmp_path: Path) -> None:
    """The documented limit: reconciliation, not the cursor, finds rows committed further behind."""
    url = make_db(tmp_path / "facilities.sqlite")
    conn = connector(url, cursor="updated_at", lag_seconds=60)
    _, state = pull(conn, {})
    execute(url, f"INSERT INTO {TABLE} VALUES ({', '.join('?' * 9)})",
            ("F9", "440304001018", "library", 1.0, 1, None, None, "2021-06-01T10:30:00+08:00", 0))
    assert pull(conn, state)[0] == []


def test_soft_deleted_row_arrives_with_its_marker(tmp_path: Path) -> None:
    url = make_db(tmp_path / "facilities.sqlite")
    conn = connector(url, cursor="updated_at")
    _, state = pull(conn, {})
    execute(url, f"UPDATE {TABLE} SET is_deleted = 1, updated_at = '2021-06-03T00:00:00+08:00' WHERE fac_no = ?",
            (ROWS[1][0],))
    taken, _ = pull(conn, state)
    assert [(r["fac_no"], r["is_deleted"]) for r in taken] == [(ROWS[1][0], "1")]


def test_numeric_cursor_lag_is_subtracted_as_a_number(tmp_path: Path) -> None:
    url = make_db(tmp_path / "facilities.sqlite")
    conn = connector(url, cursor="staff", lag_seconds=2)
    _, state = pull(conn, {})
    assert (state["watermark"], state["cursor_type"]) == (7, "number")
    assert set(state["boundary"]) == {json.dumps([ROWS[0][0]]), json.dumps([ROWS[2][0]])}  # staff >= 7 - 2
    execute(url, f"UPDATE {TABLE} SET note = 'late' WHERE fac_no = ?", (ROWS[0][0],))  # staff 5: inside the lag
    taken, _ = pull(conn, state)
    assert [(r["fac_no"], r["note"]) for r in taken] == [(ROWS[0][0], "late")]


def test_incremental_payload_is_named_by_its_cursor_span(tmp_path: Path) -> None:
    url = make_db(tmp_path / "facilities.sqlite")
    conn = connector(url, cursor="staff", lag_seconds=1)
    (first,) = conn.fetch({})
    assert first.name == f"{TABLE}-start-7.parquet"
    execute(url, f"UPDATE {TABLE} SET staff = 9 WHERE fac_no = ?", (ROWS[0][0],))
    (second,) = conn.fetch(first.cursor)
    assert second.name == f"{TABLE}-6-9.parquet"


def test_text_cursor_name_is_filename_safe(tmp_path: Path) -> None:
    (payload,) = connector(make_db(tmp_path / "f.sqlite"), cursor="updated_at").fetch({})
    assert payload.name == f"{TABLE}-start-2021-06-01T11_00_00+08_00.parquet"


def test_keys_that_repeat_keep_every_row_hash_in_the_boundary(tmp_path: Path) -> None:
    twin = (ROWS[2][0], *ROWS[2][1:6], "twin", ROWS[2][7], 0)
    url = make_db(tmp_path / "facilities.sqlite", rows=[*ROWS, twin], primary_key=False)
    conn = connector(url, cursor="updated_at", lag_seconds=0)
    first, state = pull(conn, {})
    assert len(first) == 4
    twins = state["boundary"][json.dumps([ROWS[2][0]])]
    assert isinstance(twins, list)
    assert len(twins) == 2
    assert pull(conn, state)[0] == []


def test_a_changed_cursor_column_type_is_refused(tmp_path: Path) -> None:
    conn = connector(make_db(tmp_path / "f.sqlite"), cursor="staff")
    with pytest.raises(SqlSourceError, match="reset the feed's state"):
        list(conn.fetch({"watermark": "2021-06-01", "cursor_type": "text", "boundary": {}}))


# --- names, locations and errors ---------------------------------------------------------------


@pytest.mark.parametrize(("setting", "value"), [("table", "facility; DROP TABLE x"), ("table", "1facility"),
                                                ("db_schema", "main.x"), ("cursor", "updated at"),
                                                ("cursor", "更新时间")],
                         ids=["injection", "leading-digit", "dotted-schema", "space", "non-ascii"])
def test_names_that_are_not_plain_identifiers_are_refused(setting: str, value: str) -> None:
    settings: dict[str, Any] = {setting: value}
    with pytest.raises(SqlSourceError, match=f"{setting} .* is not a plain SQL identifier"):
        connector("sqlite:///x.sqlite", **settings)


@pytest.mark.parametrize(("conn_type", "driver"), [("postgres", "postgresql+psycopg"),
                                                   ("postgresql", "postgresql+psycopg"),
                                                   ("mysql", "mysql+pymysql"), ("mariadb", "mysql+pymysql")])
def test_connection_url_keeps_the_password_inside_the_url(conn_type: str, driver: str) -> None:
    url = connection_url(Connection("dept_db", conn_type, "db.example", 5433, "reader", "s3cr/et@", "civil"))
    assert (url.drivername, url.host, url.port, url.username, url.database) == (driver, "db.example", 5433,
                                                                                "reader", "civil")
    assert url.password == "s3cr/et@"
    assert "s3cr" not in url.render_as_string(hide_password=True)
    assert "s3cr" not in str(url) and "s3cr" not in repr(url)


def test_sqlite_connection_takes_the_file_from_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = make_db(tmp_path / "facilities.sqlite")
    monkeypatch.setenv("AIRFLOW_CONN_CIVIL_DB", json.dumps({"conn_type": "sqlite", "host": url[len("sqlite:///"):]}))
    conn = SqlConnector(SqlSource(kind="sql", conn_id="civil_db", table=TABLE), ("fac_no",))
    assert conn.url().database == str(tmp_path / "facilities.sqlite")
    assert len(rows_of(next(conn.fetch({})))) == len(ROWS)


def test_unknown_connection_type_is_terminal() -> None:
    with pytest.raises(SqlSourceError, match="has type 'oracle'"):
        connection_url(Connection("dept_db", "oracle", "db.example"))


def test_missing_table_names_the_table_and_the_place(tmp_path: Path) -> None:
    url = make_db(tmp_path / "facilities.sqlite")
    with pytest.raises(TerminalError, match="table 'community_facilities' does not exist") as caught:
        fetch_one(url, table="community_facilities")
    assert "facilities.sqlite" in str(caught.value)
    assert not caught.value.transient


def test_missing_cursor_column_is_terminal(tmp_path: Path) -> None:
    with pytest.raises(SqlSourceError, match=r"no column\(s\) \['modified_at'\]"):
        fetch_one(make_db(tmp_path / "f.sqlite"), cursor="modified_at")


def test_missing_sqlite_file_is_terminal_and_not_created(tmp_path: Path) -> None:
    with pytest.raises(SqlSourceError, match="does not exist"):
        fetch_one(f"sqlite:///{tmp_path / 'nowhere.sqlite'}")
    assert not (tmp_path / "nowhere.sqlite").exists()


def test_locked_sqlite_database_is_transient(tmp_path: Path) -> None:
    url = make_db(tmp_path / "f.sqlite")
    locker = sqlite3.connect(tmp_path / "f.sqlite")
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(SqlUnavailableError, match="locked"):
            SqlConnector(SqlSource(kind="sql", url=url + "?timeout=0.1", table=TABLE), ()).fetch({}).__next__()
    finally:
        locker.rollback()
        locker.close()


@pytest.mark.parametrize(("message", "error"), [
    ('FATAL:  password authentication failed for user "reader"', SqlCredentialsError),
    ('FATAL:  role "reader" does not exist', SqlCredentialsError),
    ("(1045, \"Access denied for user 'reader'@'10.0.0.1' (using password: YES)\")", SqlCredentialsError),
    ('FATAL:  database "civil" does not exist', SqlSourceError),
    ("(1049, \"Unknown database 'civil'\")", SqlSourceError),
    ("(1142, \"SELECT command denied to user 'reader'\")", SqlSourceError),
    ("(2006, 'MySQL server has gone away')", SqlUnavailableError),
    ("(1205, 'Lock wait timeout exceeded; try restarting transaction')", SqlUnavailableError),
    ("connection failed: Connection refused", SqlUnavailableError),
], ids=["pg-password", "pg-role", "maria-denied", "pg-database", "maria-database", "no-select", "gone-away",
        "lock-wait", "refused"])
def test_driver_errors_are_classified(message: str, error: type[Exception]) -> None:
    err = sa.exc.OperationalError("SELECT 1", {}, Exception(f"{message} hunter2"))
    classified = classify_error(err, "'dept_db' (postgresql+psycopg://reader:***@db/civil)", "hunter2")
    assert type(classified) is error
    assert "hunter2" not in str(classified)
    assert "dept_db" in str(classified)


def test_url_of_an_unknown_database_kind_is_terminal() -> None:
    with pytest.raises(SqlSourceError, match=r"no database driver for oracle://reader@db\.example/civil"):
        next(connector("oracle://reader@db.example/civil").fetch({}))
