"""Airflow 3 on a civicnet home: one environment for every Airflow process, SQLite metadata.

Two ways to run the DAGs, with the same DAG files, task SDK and metadata database:
`run_dag` runs one DAG to completion with `airflow dags test` (the demo and the DAG tests),
inside `dag_session` in one Airflow process for every run (session, worker), and
`standalone_env`/`exec_standalone` start `airflow standalone` (scheduler, DAG processor,
triggerer and the API server with the UI, on loopback by default: `civicnet airflow`), which
runs the DAGs on their schedules and assets as an operator sees them (standalone).

    env         the environment, folders and DAG files of every Airflow process on a home
    session     DAG runs through one Airflow process per home; the metadata database and pool
    worker      that process: `airflow` commands in turn (the only module here importing Airflow)
    standalone  `airflow standalone` on a home, and the password it generates
"""

from __future__ import annotations

from civicnet.pipeline.runner.env import CITY_POOL, DagsNotFoundError, airflow_env, dags_folder
from civicnet.pipeline.runner.session import (
    AirflowSession,
    DagRunFailedError,
    dag_session,
    ensure_metadata,
    run_dag,
    task_failures,
)
from civicnet.pipeline.runner.standalone import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    GENERATED_PASSWORDS,
    exec_standalone,
    generated_credentials,
    standalone_argv,
    standalone_env,
)

__all__ = [
    "CITY_POOL",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "GENERATED_PASSWORDS",
    "AirflowSession",
    "DagRunFailedError",
    "DagsNotFoundError",
    "airflow_env",
    "dag_session",
    "dags_folder",
    "ensure_metadata",
    "exec_standalone",
    "generated_credentials",
    "run_dag",
    "standalone_argv",
    "standalone_env",
    "task_failures",
]
