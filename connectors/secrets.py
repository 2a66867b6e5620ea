"""Credentials for connectors come from Airflow connections, never from feed config files.

A feed names a `conn_id`. Inside an Airflow task the connection is read through Airflow's own
secrets chain; elsewhere (the CLI, tests, the benchmark) from the environment variable
`AIRFLOW_CONN_<CONN_ID>` in either of Airflow's two formats (a URI, or JSON), which is also
the first place Airflow itself looks. A `Connection` never shows its password or token in
`repr` or in error messages.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from schemas.errors import TerminalError


class MissingConnectionError(TerminalError):
    """A feed names an Airflow connection that is not defined."""


@dataclass(frozen=True)
class Connection:
    """The parts of an Airflow connection a connector uses."""

    conn_id: str
    conn_type: str = ""
    host: str = ""
    port: int | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    schema: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def secret(self, name: str) -> str | None:
        """A secret from `extra` (for example an API token), else the password for 'password'."""
        value = self.extra.get(name)
        if value is None and name == "password":
            return self.password
        return None if value is None else str(value)


def env_name(conn_id: str) -> str:
    """The environment variable Airflow reads a connection from."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def _from_uri(conn_id: str, uri: str) -> Connection:
    parts = urlsplit(uri)
    extra: dict[str, Any] = dict(parse_qsl(parts.query))
    if "__extra__" in extra:
        extra = json.loads(extra["__extra__"])
    return Connection(conn_id=conn_id, conn_type=parts.scheme.replace("-", "_"), host=unquote(parts.hostname or ""),
                      port=parts.port, login=unquote(parts.username) if parts.username else None,
                      password=unquote(parts.password) if parts.password else None,
                      schema=unquote(parts.path[1:]), extra=extra)  # as Airflow: one slash off


def _from_json(conn_id: str, text: str) -> Connection:
    raw = json.loads(text)
    extra = raw.get("extra") or {}
    if isinstance(extra, str):
        extra = json.loads(extra)
    return Connection(conn_id=conn_id, conn_type=raw.get("conn_type", ""), host=raw.get("host") or "",
                      port=raw.get("port"), login=raw.get("login"), password=raw.get("password"),
                      schema=raw.get("schema") or "", extra=extra)


def _from_airflow(conn_id: str) -> Connection | None:
    """Airflow's secrets chain, when running inside an Airflow task; None elsewhere."""
    if "AIRFLOW_CTX_DAG_ID" not in os.environ:
        return None
    try:
        from airflow.sdk import BaseHook  # only inside a task: importing Airflow costs seconds

        conn = BaseHook.get_connection(conn_id)
    except Exception:
        return None
    return Connection(conn_id=conn_id, conn_type=conn.conn_type or "", host=conn.host or "", port=conn.port,
                      login=conn.login, password=conn.password, schema=conn.schema or "",
                      extra=conn.extra_dejson)


def get_connection(conn_id: str) -> Connection:
    """The connection named `conn_id`; a clear error (naming where to define it) if there is none."""
    text = os.environ.get(env_name(conn_id))
    if text:
        return _from_json(conn_id, text) if text.lstrip().startswith("{") else _from_uri(conn_id, text)
    conn = _from_airflow(conn_id)
    if conn is None:
        raise MissingConnectionError(
            f"Airflow connection {conn_id!r} is not defined: create it with "
            f"`airflow connections add {conn_id} ...` or set {env_name(conn_id)}; "
            "credentials never go in feed config files")
    return conn
