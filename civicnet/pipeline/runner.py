"""Airflow 3 on a civicnet home: one environment for every Airflow process, SQLite metadata.

Two ways to run the DAGs, with the same DAG files, task SDK and metadata database:
`run_dag` runs one DAG to completion with `airflow dags test` (the demo and the DAG tests), and
`standalone_env`/`exec_standalone` start `airflow standalone` (scheduler, DAG processor,
triggerer and the API server with the UI, on loopback by default: `civicnet airflow`), which
runs the DAGs on their schedules and assets as an operator sees them.
"""

from __future__ import annotations

import grp
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from schemas.errors import TerminalError
from schemas.homefiles import current_modes, make_folder, open_private, write_atomic
from schemas.layout import airflow_home, airflow_logs

CITY_POOL = "civicnet_city_node"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8080
# where `airflow standalone` writes the password it generates for its `admin` user
GENERATED_PASSWORDS = "simple_auth_manager_passwords.json.generated"


class DagRunFailedError(TerminalError):
    """An Airflow DAG run did not succeed."""


class DagsNotFoundError(TerminalError):
    """The DAG files are not where this installation of civicnet keeps them."""


def dags_folder() -> Path:
    """The folder of civicnet's DAG files (override with $CIVICNET_DAGS_FOLDER).

    In a source checkout, the repository's dags/ beside this package (the files being edited);
    in an installed copy, the package data `civicnet_dags` the wheel ships dags/ as."""
    override = os.environ.get("CIVICNET_DAGS_FOLDER")
    if override:
        return Path(override)
    checkout = Path(__file__).resolve().parents[2]  # civicnet/pipeline/runner.py → the checkout
    if (checkout / "pyproject.toml").is_file() and (checkout / "dags").is_dir():
        return checkout / "dags"
    # dags/ has no __init__.py (Airflow parses every file in it), so civicnet_dags is a namespace
    # package: its spec names its folder, where importlib.resources would give a MultiplexedPath
    spec = importlib.util.find_spec("civicnet_dags")
    if spec is None or not spec.submodule_search_locations:
        raise DagsNotFoundError(
            f"civicnet's DAG files are neither in a source checkout ({checkout / 'dags'}) nor installed as the "
            "package civicnet_dags; reinstall civicnet (`pip install .` ships them) or set CIVICNET_DAGS_FOLDER")
    return Path(next(iter(spec.submodule_search_locations)))


def airflow_env(home: Path) -> dict[str, str]:
    """The environment of every Airflow subprocess for this home: its task logs and task writes get
    this process's home modes (Airflow chmods its log files itself, past the umask).

    PATH starts with this interpreter's bin folder: `airflow standalone` starts its components
    as `airflow ...` from PATH, which an unactivated virtualenv (systemd, cron) does not have."""
    af, logs = airflow_home(home), airflow_logs(home)
    modes = current_modes()
    share = {} if modes.gid is None else {"AIRFLOW_VAR_CIVICNET_SHARE_GROUP": grp.getgrgid(modes.gid).gr_name}
    bin_dir = str(Path(sys.executable).parent)
    return os.environ | share | {
        "PATH": os.pathsep.join(filter(None, [bin_dir, os.environ.get("PATH")])),
        "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FILE_PERMISSIONS": oct(modes.file),
        "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FOLDER_PERMISSIONS": oct(modes.folder),
        "AIRFLOW_HOME": str(af),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{af / 'airflow.db'}",
        # airflow.cfg, written once, names these by absolute path: set them from the home, so a
        # moved or copied home never writes back to where it used to be
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(af / "plugins"),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(logs),
        "AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY": str(logs / "dag_processor"),
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW_VAR_CIVICNET_HOME": str(home),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(dags_folder()), os.environ.get("PYTHONPATH")])),
    }


def _airflow(home: Path, args: list[str], log: Path) -> int:
    exe = Path(sys.executable).parent / "airflow"
    make_folder(log.parent)
    with open_private(log, append=True) as out:
        # Airflow's metadata database, config and logs are written under the home's umask
        return subprocess.run([str(exe), *args], env=airflow_env(home), stdout=out, stderr=subprocess.STDOUT,
                              check=False, umask=current_modes().umask).returncode


def _tail(log: Path, lines: int = 25) -> str:
    return "\n".join(log.read_text("utf-8", errors="replace").splitlines()[-lines:])


def ensure_metadata(home: Path) -> None:
    """Create the SQLite metadata database and the single-writer pool once."""
    af = airflow_home(home)
    stamp = af / ".civicnet-ready"
    if stamp.exists():
        return
    make_folder(af)
    log = airflow_logs(home) / "setup.log"
    if _airflow(home, ["db", "migrate"], log) != 0:
        raise DagRunFailedError(f"airflow db migrate failed; see {log}:\n{_tail(log)}")
    if _airflow(home, ["pools", "set", CITY_POOL, "1", "single writer of the city node"], log) != 0:
        raise DagRunFailedError(f"could not create pool {CITY_POOL}; see {log}:\n{_tail(log)}")
    write_atomic(stamp, "ok\n")


def run_dag(home: Path, dag_id: str) -> Path:
    """Run one DAG to completion with `airflow dags test`; returns its log, raises if it failed."""
    ensure_metadata(home)
    log = airflow_logs(home) / f"{dag_id}.log"
    start = log.stat().st_size if log.exists() else 0  # the log keeps earlier runs: read only this one
    code = _airflow(home, ["dags", "test", dag_id], log)
    this_run = log.read_bytes()[start:].decode("utf-8", errors="replace")
    if code != 0 or "state=failed" in this_run.split("DagRun Finished")[-1][:2000]:
        reasons = task_failures(this_run)
        said = "\n".join(f"  {r}" for r in reasons) if reasons else _tail(log)
        raise DagRunFailedError(f"DAG {dag_id} failed (exit {code}); see {log}:\n{said}")
    return log


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


def task_failures(text: str) -> list[str]:
    """The messages of the terminal civicnet errors a run's tasks failed with, once each, in order."""
    found = re.findall(r"^airflow\.sdk\.exceptions\.AirflowFailException: (.+)$", text, flags=re.MULTILINE)
    return list(dict.fromkeys(found))
