"""Run civicnet's DAGs for real through Airflow 3 (`airflow dags test`) on SQLite metadata.

Each DAG run is a subprocess with its own AIRFLOW_HOME under the civicnet home, so the demo
and the tests use the same DAG files, the same task SDK and the same metadata database that an
engineer would inspect with `airflow` afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from schemas.errors import TerminalError

CITY_POOL = "civicnet_city_node"


class DagRunFailedError(TerminalError):
    """An Airflow DAG run did not succeed."""


def dags_folder() -> Path:
    """The repository's dags/ folder (override with $CIVICNET_DAGS_FOLDER)."""
    override = os.environ.get("CIVICNET_DAGS_FOLDER")
    return Path(override) if override else Path(__file__).resolve().parent.parent / "dags"


def airflow_env(home: Path) -> dict[str, str]:
    """The environment of every Airflow subprocess for this home."""
    af = home / "airflow"
    return os.environ | {
        "AIRFLOW_HOME": str(af),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{af / 'airflow.db'}",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW_VAR_CIVICNET_HOME": str(home),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(dags_folder()), os.environ.get("PYTHONPATH")])),
    }


def _airflow(home: Path, args: list[str], log: Path) -> int:
    exe = Path(sys.executable).parent / "airflow"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.run([str(exe), *args], env=airflow_env(home), stdout=out,
                              stderr=subprocess.STDOUT, check=False).returncode


def _tail(log: Path, lines: int = 25) -> str:
    return "\n".join(log.read_text("utf-8", errors="replace").splitlines()[-lines:])


def ensure_metadata(home: Path) -> None:
    """Create the SQLite metadata database and the single-writer pool once."""
    af = home / "airflow"
    stamp = af / ".civicnet-ready"
    if stamp.exists():
        return
    af.mkdir(parents=True, exist_ok=True)
    log = af / "logs" / "setup.log"
    if _airflow(home, ["db", "migrate"], log) != 0:
        raise DagRunFailedError(f"airflow db migrate failed; see {log}:\n{_tail(log)}")
    if _airflow(home, ["pools", "set", CITY_POOL, "1", "single writer of the city node"], log) != 0:
        raise DagRunFailedError(f"could not create pool {CITY_POOL}; see {log}:\n{_tail(log)}")
    stamp.write_text("ok\n")


def run_dag(home: Path, dag_id: str) -> Path:
    """Run one DAG to completion with `airflow dags test`; returns its log, raises if it failed."""
    ensure_metadata(home)
    log = home / "airflow" / "logs" / f"{dag_id}.log"
    start = log.stat().st_size if log.exists() else 0  # the log keeps earlier runs: read only this one
    code = _airflow(home, ["dags", "test", dag_id], log)
    this_run = log.read_bytes()[start:].decode("utf-8", errors="replace")
    if code != 0 or "state=failed" in this_run.split("DagRun Finished")[-1][:2000]:
        reasons = task_failures(this_run)
        said = "\n".join(f"  {r}" for r in reasons) if reasons else _tail(log)
        raise DagRunFailedError(f"DAG {dag_id} failed (exit {code}); see {log}:\n{said}")
    return log


def task_failures(text: str) -> list[str]:
    """The messages of the terminal civicnet errors a run's tasks failed with, once each, in order."""
    found = re.findall(r"^airflow\.sdk\.exceptions\.AirflowFailException: (.+)$", text, flags=re.MULTILINE)
    return list(dict.fromkeys(found))
