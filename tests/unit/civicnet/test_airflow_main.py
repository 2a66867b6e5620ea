"""The celery 5.7 / celery provider 3.26 import break that civicnet.pipeline.runner.airflow_main works around."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROVIDER = "airflow.providers.celery.executors.celery_executor_utils"


def import_in_child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)


def test_the_locked_celery_provider_cannot_be_imported_as_it_is() -> None:
    """The reproduction: when this fails, a release fixed it; remove airflow_main and start `airflow` itself."""
    done = import_in_child(f"import {PROVIDER}")
    assert done.returncode != 0
    assert "cannot import name 'retry' from 'celery.backends.database'" in done.stderr


def test_after_the_patch_the_provider_imports_and_uses_the_retry() -> None:
    done = import_in_child("from civicnet.pipeline.runner.airflow_main import patch_celery_database_retry as p\n"
                           f"assert p()\nimport {PROVIDER} as u\n"
                           "print(u.BulkStateFetcher._query_task_cls_from_db_backend.__wrapped__.__name__)")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "_query_task_cls_from_db_backend"


def test_the_retry_tries_three_times_on_a_database_error_then_raises() -> None:
    from sqlalchemy.exc import OperationalError

    from civicnet.pipeline.runner.airflow_main import database_retry

    calls: list[int] = []

    @database_retry
    def flaky(n: int) -> int:
        calls.append(n)
        if len(calls) < 3:
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        return n

    assert flaky(7) == 7 and calls == [7, 7, 7]
    calls.clear()

    @database_retry
    def broken() -> None:
        calls.append(0)
        raise OperationalError("SELECT 1", {}, Exception("down"))

    with pytest.raises(OperationalError):
        broken()
    assert len(calls) == 3
