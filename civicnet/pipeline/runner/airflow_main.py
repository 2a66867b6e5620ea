"""`airflow` for the service's components, with one library incompatibility worked around.

apache-airflow-providers-celery 3.26 imports `retry` from `celery.backends.database`, which
celery 5.7 removed (its database backend now retries by itself: `result_backend_always_retry`,
`result_backend_max_retries`); so with the locked pair, `airflow celery worker` and a scheduler
with the CeleryExecutor fail on import. No upstream issue was found in the searchable trackers;
tests/unit/civicnet/test_airflow_main.py reproduces it and fails once a release fixes it (then
remove this module and start `airflow` itself). The provider uses the decorator on one query of
its own (the task states in the result backend), so `retry` here is what celery's was: up to
three attempts on a database error.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
MAX_RETRIES = 3  # celery's old decorator: `max_retries=3`


def database_retry(fun: F) -> F:
    """Run `fun`, again on a database error, at most MAX_RETRIES times (celery < 5.7's `retry`)."""
    from sqlalchemy.exc import DatabaseError, InvalidRequestError
    from sqlalchemy.orm.exc import StaleDataError

    @functools.wraps(fun)
    def attempt(*args: Any, **kwargs: Any) -> Any:
        for tried in range(1, MAX_RETRIES + 1):
            try:
                return fun(*args, **kwargs)
            except (DatabaseError, InvalidRequestError, StaleDataError):
                if tried == MAX_RETRIES:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    return attempt  # type: ignore[return-value]


def patch_celery_database_retry() -> bool:
    """Give `celery.backends.database` its `retry` back if this celery lacks it; whether it did."""
    import celery.backends.database as database

    if hasattr(database, "retry"):
        return False
    database.retry = database_retry
    return True


def main() -> int:
    """`airflow ARGS` (sys.argv[1:]) after the patch."""
    patch_celery_database_retry()
    from airflow.__main__ import main as airflow

    airflow()  # type: ignore[no-untyped-call]
    return 0


if __name__ == "__main__":
    sys.exit(main())
