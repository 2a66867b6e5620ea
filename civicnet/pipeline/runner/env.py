"""The environment of every Airflow process on a civicnet home: its folders, SQLite metadata, DAG files."""

from __future__ import annotations

import grp
import importlib.util
import os
import sys
from pathlib import Path

from civicnet.pipeline.pools import CITY_POOL
from schemas.errors import TerminalError
from schemas.homefiles import current_modes
from schemas.layout import airflow_home, airflow_logs

__all__ = ["CITY_POOL", "DagsNotFoundError", "airflow_env", "dags_folder"]


class DagsNotFoundError(TerminalError):
    """The DAG files are not where this installation of civicnet keeps them."""


def dags_folder() -> Path:
    """The folder of civicnet's DAG files (override with $CIVICNET_DAGS_FOLDER).

    In a source checkout, the repository's dags/ beside this package (the files being edited);
    in an installed copy, the package data `civicnet_dags` the wheel ships dags/ as."""
    override = os.environ.get("CIVICNET_DAGS_FOLDER")
    if override:
        return Path(override)
    checkout = Path(__file__).resolve().parents[3]  # civicnet/pipeline/runner/env.py → the checkout
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


def airflow_env(home: Path, metadata: str | None = None) -> dict[str, str]:
    """The environment of every Airflow subprocess for this home: its task logs and task writes get
    this process's home modes (Airflow chmods its log files itself, past the umask).

    The metadata database is the home's SQLite file (embedded), or `metadata`, an SQLAlchemy URL
    (the service's PostgreSQL database: civicnet.pipeline.runner.server).

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
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata or f"sqlite:///{af / 'airflow.db'}",
        # airflow.cfg, written once, names these by absolute path: set them from the home, so a
        # moved or copied home never writes back to where it used to be
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(af / "plugins"),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(logs),
        "AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY": str(logs / "dag_processor"),
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW_VAR_CIVICNET_HOME": str(home),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(dags_folder()), os.environ.get("PYTHONPATH")])),
    }
