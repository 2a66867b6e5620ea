"""Credentials come from Airflow connections (the environment form here), never shown in reprs or errors."""

from __future__ import annotations

import json

import pytest

from connectors.secrets import MissingConnectionError, get_connection


def test_a_uri_connection_is_parsed_as_airflow_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_DEPT_DB", "postgresql://clerk:s%40cret@db.example:5433/records?sslmode=require")
    conn = get_connection("dept_db")
    assert (conn.conn_type, conn.host, conn.port, conn.login, conn.schema) == (
        "postgresql", "db.example", 5433, "clerk", "records")
    assert conn.password == "s@cret" and conn.extra == {"sslmode": "require"}
    assert "s@cret" not in repr(conn) and "sslmode" not in repr(conn)


def test_a_json_connection_keeps_its_extra_and_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_HEALTH_API", json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": 8080, "extra": {"token": "t0ken"}}))
    conn = get_connection("health_api")
    assert (conn.host, conn.port, conn.secret("token")) == ("127.0.0.1", 8080, "t0ken")
    assert "t0ken" not in repr(conn)


def test_sqlite_keeps_an_absolute_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_LOCAL", "sqlite:////var/lib/dept.db")
    assert get_connection("local").schema == "/var/lib/dept.db"


def test_a_missing_connection_says_where_to_define_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NOWHERE", raising=False)
    with pytest.raises(MissingConnectionError, match=r"AIRFLOW_CONN_NOWHERE.*never go in feed config"):
        get_connection("nowhere")
