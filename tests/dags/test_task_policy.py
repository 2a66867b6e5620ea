"""dags/task_policy.translate_errors: terminal errors fail without retries, the rest pass through."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import share_group

from connectors.feeds import FeedConfigError
from schemas.errors import (
    ContractError,
    TerminalError,
    TransientError,
    UnknownDivisionError,
)
from schemas.homefiles import OWNER_ONLY, current_modes, shared, using_modes
from warehouse.node import DiskFullError, NodeCorruptError, NodeLockedError

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """dags/task_policy, imported as Airflow imports it, with Airflow kept out of ~/airflow."""
    home = tmp_path_factory.mktemp("airflow_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_HOME", str(home))
        mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        mp.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
        mp.syspath_prepend(str(DAGS))
        with using_modes(OWNER_ONLY):  # the wrapper sets the process umask: give the session its own back
            yield importlib.import_module("task_policy")


def raising(err: BaseException) -> Callable[[], Any]:
    def body() -> Any:
        raise err

    return body


@pytest.mark.parametrize("err", [
    TerminalError("a person must act"),
    ContractError("schemas/datasets/residents.yaml: field 'sex' has no type"),
    UnknownDivisionError("440399999999 is not a 2020 division"),
    FeedConfigError("feed config x.yaml is invalid"),
    NodeCorruptError("node 440304001018 is damaged; rebuild it"),
    DiskFullError("the disk of var/nodes is full"),
], ids=lambda e: type(e).__name__)
def test_terminal_error_fails_the_task_without_retry(policy: ModuleType, err: TerminalError) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException) as caught:
        policy.translate_errors(raising(err))()
    assert str(caught.value) == str(err)
    assert caught.value.__cause__ is err


@pytest.mark.parametrize("err", [
    TransientError("timeout"),
    NodeLockedError("node 440300000000 is busy"),
    ValueError("not ours: Airflow decides"),
], ids=lambda e: type(e).__name__)
def test_other_errors_pass_through_unchanged_so_airflow_retries(policy: ModuleType,
                                                               err: Exception) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(type(err)) as caught:
        policy.translate_errors(raising(err))()
    assert caught.value is err
    assert not isinstance(caught.value, AirflowFailException)


@pytest.mark.parametrize("value", [
    ["batch-1", "batch-2"],
    {"batches": 2, "accepted": 10},
    [],
    None,
], ids=["list", "dict", "empty", "none"])
def test_return_value_passes_through(policy: ModuleType, value: Any) -> None:
    assert policy.translate_errors(lambda: value)() is value


def test_arguments_reach_the_wrapped_function(policy: ModuleType) -> None:
    def body(batch_id: str, *, slug: str) -> tuple[str, str]:
        return batch_id, slug

    assert policy.translate_errors(body)("b1", slug="residents") == ("b1", "residents")


def test_wrapper_keeps_the_name_airflow_uses_as_task_id(policy: ModuleType) -> None:
    def merge(batch_ids: list[str]) -> list[str]:
        """Apply checked batches."""
        return batch_ids

    wrapped = policy.translate_errors(merge)
    assert (wrapped.__name__, wrapped.__doc__) == ("merge", "Apply checked batches.")


def test_a_task_writes_the_home_owner_only_or_for_the_share_group(policy: ModuleType,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def probe() -> tuple[int, object]:
        return os.umask(0o022), current_modes()

    monkeypatch.delenv("AIRFLOW_VAR_CIVICNET_SHARE_GROUP", raising=False)
    os.umask(0o022)
    assert policy.translate_errors(probe)() == (0o077, OWNER_ONLY)
    monkeypatch.setenv("AIRFLOW_VAR_CIVICNET_SHARE_GROUP", share_group())
    assert policy.translate_errors(probe)() == (0o027, shared(share_group()))


def test_an_unknown_share_group_fails_the_task_without_retry(policy: ModuleType,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv("AIRFLOW_VAR_CIVICNET_SHARE_GROUP", "civicnet-no-such-group")
    with pytest.raises(AirflowFailException, match="groupadd civicnet-no-such-group"):
        policy.translate_errors(lambda: None)()


PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from task_policy import translate_errors
from connectors.secrets import MissingConnectionError, get_connection

try:
    get_connection("dept_api")
except MissingConnectionError:
    print("outside a task: not found")

@translate_errors
def task() -> None:
    conn = get_connection("dept_api")
    print(json.dumps([conn.host, conn.port, conn.secret("token")]))

task()
"""


def test_inside_a_task_connections_come_from_airflows_secrets_chain(tmp_path: Path) -> None:
    """A connection only Airflow knows (here in a secrets-backend file, not in AIRFLOW_CONN_*) reaches
    a connector once a task runs; connectors/ itself never imports Airflow."""
    import json
    import os
    import subprocess
    import sys

    conns = tmp_path / "connections.json"
    conns.write_text(json.dumps({"dept_api": {"conn_type": "http", "host": "10.0.0.7", "port": 8443,
                                              "extra": {"token": "from-the-backend"}}}), "utf-8")
    env = os.environ | {
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
        "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"connections_file_path": str(conns)})}
    done = subprocess.run([sys.executable, "-c", PROBE, str(Path(__file__).parents[2] / "dags")], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "outside a task: not found"
    assert json.loads(lines[-1]) == ["10.0.0.7", 8443, "from-the-backend"]


@pytest.mark.parametrize("empty", [{}, [], None], ids=["dict", "list", "none"])
def test_an_empty_result_skips_the_task_so_its_outlets_emit_nothing(policy: ModuleType, empty: Any) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    with pytest.raises(AirflowSkipException, match="nothing changed"):
        policy.skip_when_empty(lambda: empty)()


def test_a_result_is_returned_as_it_is(policy: ModuleType) -> None:
    assert policy.skip_when_empty(lambda: {"applied": 3})() == {"applied": 3}
