"""Credentials for connectors come from Airflow connections, never from feed config files.

A feed names a `conn_id`. The connection is read from the environment variable
`AIRFLOW_CONN_<CONN_ID>` in either of Airflow's two formats (a URI, or JSON), the first place
Airflow itself looks; inside an Airflow task, then through Airflow's own secrets chain (its
metadata database, secrets backends), which the DAG layer registers with `register_lookup`.
A `Connection` never shows its password or token in `repr` or in error messages.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
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


# Where connections come from besides the environment: the DAG layer registers Airflow's own lookup
# when a task starts (dags/task_policy.py), so nothing in connectors/ imports Airflow.
_lookups: list[Callable[[str], Connection | None]] = []


def register_lookup(lookup: Callable[[str], Connection | None]) -> None:
    """Add a source of connections (once); it returns None for a connection it does not know."""
    if lookup not in _lookups:
        _lookups.append(lookup)


def get_connection(conn_id: str) -> Connection:
    """The connection named `conn_id`; a clear error (naming where to define it) if there is none."""
    text = os.environ.get(env_name(conn_id))
    if text:
        return _from_json(conn_id, text) if text.lstrip().startswith("{") else _from_uri(conn_id, text)
    conn = next((found for lookup in _lookups if (found := lookup(conn_id)) is not None), None)
    if conn is None:
        raise MissingConnectionError(
            f"Airflow connection {conn_id!r} is not defined: create it with "
            f"`airflow connections add {conn_id} ...` or set {env_name(conn_id)}; "
            "credentials never go in feed config files")
    return conn
