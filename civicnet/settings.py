"""Settings for the CLI and tests: the one place (besides DAG tasks) that reads the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_AIRFLOW_URL = "http://127.0.0.1:8080"  # where `civicnet airflow` serves Airflow's API and UI


@dataclass(frozen=True)
class Settings:
    """Where civicnet keeps its state, and how the gateway reaches Airflow's API (the password is
    kept out of repr, so it never reaches a log)."""

    home: Path
    airflow_url: str = DEFAULT_AIRFLOW_URL
    airflow_username: str | None = None
    airflow_password: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, home: str | os.PathLike[str] | None = None) -> Settings:
        """`home` if given, else $CIVICNET_HOME, else ./var (always absolute); Airflow's API from
        $CIVICNET_AIRFLOW_URL, $CIVICNET_AIRFLOW_USERNAME and $CIVICNET_AIRFLOW_PASSWORD."""
        chosen = home if home is not None else os.environ.get("CIVICNET_HOME", "var")
        return cls(home=Path(chosen).resolve(),
                   airflow_url=os.environ.get("CIVICNET_AIRFLOW_URL") or DEFAULT_AIRFLOW_URL,
                   airflow_username=os.environ.get("CIVICNET_AIRFLOW_USERNAME") or None,
                   airflow_password=os.environ.get("CIVICNET_AIRFLOW_PASSWORD") or None)
