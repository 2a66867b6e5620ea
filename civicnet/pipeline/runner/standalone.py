"""`airflow standalone` on a civicnet home: scheduler, DAG processor, triggerer and the API server
with the UI (`civicnet airflow`), which runs the DAGs on their schedules and assets as an operator
sees them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from civicnet.pipeline.runner.env import airflow_env
from civicnet.pipeline.runner.session import ensure_metadata
from schemas.layout import airflow_home

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8080
# where `airflow standalone` writes the password it generates for its `admin` user
GENERATED_PASSWORDS = "simple_auth_manager_passwords.json.generated"


def standalone_env(home: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> dict[str, str]:
    """The environment of `airflow standalone` on this home: the API server and UI on host:port
    (loopback unless told), and the tasks' execution API at the same address."""
    return airflow_env(home) | {
        "AIRFLOW__API__HOST": host,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://{_url_host(host)}:{port}",
    }


def _url_host(host: str) -> str:
    """The host the API server's own URL names (a wildcard bind is reached on loopback)."""
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def standalone_argv() -> list[str]:
    """The command that runs Airflow standalone from this interpreter's environment."""
    return [str(Path(sys.executable).parent / "airflow"), "standalone"]


def exec_standalone(home: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Replace this process with `airflow standalone` on the home (metadata and pool created first)."""
    ensure_metadata(home)
    argv = standalone_argv()
    os.execve(argv[0], argv, standalone_env(home, host, port))


def generated_credentials(home: Path) -> tuple[str, str] | None:
    """The `admin` user and the password `airflow standalone` generated for it on this home, if any."""
    path = airflow_home(home) / GENERATED_PASSWORDS
    try:
        passwords = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    password = passwords.get("admin") if isinstance(passwords, dict) else None
    return ("admin", password) if isinstance(password, str) and password else None
