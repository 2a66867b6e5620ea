"""How civicnet errors become Airflow outcomes, in one place.

Terminal errors (a person must act: bad config, a contract violation, a refused batch) fail
the task at once without retries; transient errors (a locked node, a timeout) are raised as
they are, so Airflow retries them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "civicnet",
    "retries": 3,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": True,
}


def airflow_connection(conn_id: str) -> Any:
    """A connection from Airflow's secrets chain as a civicnet `Connection`, or None if undefined."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from civicnet.pipeline import Connection

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:  # the caller says where to define it
        return None
    return Connection(conn_id=conn_id, conn_type=conn.conn_type or "", host=conn.host or "", port=conn.port,
                      login=conn.login, password=conn.password, schema=conn.schema or "", extra=conn.extra_dejson)


def translate_errors(fn: F) -> F:
    """Wrap a task body so terminal civicnet errors skip Airflow's retries; connectors may read
    Airflow connections while it runs, and what it writes is private (`use_home_modes`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from civicnet.pipeline import TerminalError, register_lookup

        register_lookup(airflow_connection)
        try:
            use_home_modes()
            use_object_stores()
            return fn(*args, **kwargs)
        except TerminalError as err:
            raise AirflowFailException(str(err)) from err

    return wrapper  # type: ignore[return-value]


def use_home_modes() -> None:
    """Make the task write the home owner-only, or readable by the Airflow variable
    `civicnet_share_group` (the umask also covers what DuckDB, pyarrow and GX write)."""
    from airflow.sdk import Variable

    from civicnet.pipeline import OWNER_ONLY, shared, use_modes

    group = Variable.get("civicnet_share_group", default=None)
    use_modes(shared(group) if group else OWNER_ONLY)


# the Airflow variables naming server mode's object stores, and the settings they stand for
OBJECT_STORE_VARIABLES = {"civicnet_landing_url": "CIVICNET_LANDING_URL",
                          "civicnet_releases_url": "CIVICNET_RELEASES_URL",
                          "civicnet_object_store_conn_id": "CIVICNET_OBJECT_STORE_CONN_ID"}


def use_object_stores() -> None:
    """Land, and mirror releases, where the Airflow variables `civicnet_landing_url`,
    `civicnet_releases_url` and `civicnet_object_store_conn_id` say (else the task's environment, as
    the CLI reads it; unset: the home's own folders)."""
    from airflow.sdk import Variable

    from civicnet import pipeline

    values = {env: Variable.get(name, default=None) for name, env in OBJECT_STORE_VARIABLES.items()}
    pipeline.use_object_stores(civicnet_home(), values)


def skip_when_empty(fn: F) -> F:
    """Wrap a task body so an empty result skips the task: a skipped task emits no asset event for
    its outlets, so the DAGs scheduled on them are not woken for nothing."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from airflow.sdk.exceptions import AirflowSkipException

        result = fn(*args, **kwargs)
        if not result:
            raise AirflowSkipException(f"{fn.__name__}: nothing changed, so no asset event")
        return result

    return wrapper  # type: ignore[return-value]


def civicnet_home() -> Any:
    """The civicnet home, from the Airflow variable `civicnet_home` (read inside tasks only)."""
    from pathlib import Path

    from airflow.sdk import Variable

    return Path(Variable.get("civicnet_home", default="var")).resolve()


def business_date() -> Any:
    """The run's business date in Asia/Shanghai: the end of the data interval, or the run time."""
    import zoneinfo

    from airflow.sdk import get_current_context

    ctx = get_current_context()
    moment = ctx.get("data_interval_end") or ctx.get("logical_date") or ctx["dag_run"].run_after
    return moment.astimezone(zoneinfo.ZoneInfo("Asia/Shanghai")).date()
