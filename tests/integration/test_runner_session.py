"""One Airflow process for every DAG run of a session (civicnet.pipeline.runner.session and worker).

The module's home gets its metadata database through the session itself (`db migrate`, `pools
set`), then `airflow` commands run in that same process, each with its output in its own log.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from civicnet.pipeline.runner import CITY_POOL, AirflowSession, DagRunFailedError, dag_session, run_dag

pytestmark = pytest.mark.slow  # Airflow's start-up, once for the module


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowSession]:
    home = tmp_path_factory.mktemp("session")
    with dag_session(home) as opened:
        opened.ensure_metadata()
        yield opened


def pid(session: AirflowSession) -> int:
    assert session._process is not None and session._process.poll() is None
    return session._process.pid


def test_setup_ran_in_the_session_and_created_the_pool(session: AirflowSession) -> None:
    con = sqlite3.connect(f"file:{session.home / 'airflow' / 'airflow.db'}?mode=ro", uri=True)
    try:
        assert con.execute("SELECT slots FROM slot_pool WHERE pool = ?", (CITY_POOL,)).fetchall() == [(1,)]
    finally:
        con.close()
    assert (session.home / "airflow" / ".civicnet-ready").exists()


def test_commands_run_in_one_process_each_into_its_own_log(session: AirflowSession, tmp_path: Path) -> None:
    first = pid(session)
    assert session.command(["version"], tmp_path / "a.log") == 0
    assert session.command(["pools", "get", CITY_POOL], tmp_path / "b.log") == 0
    assert pid(session) == first
    assert (tmp_path / "a.log").read_text("utf-8").strip()[:1].isdigit()  # the version, alone
    assert CITY_POOL in (tmp_path / "b.log").read_text("utf-8")
    assert CITY_POOL not in (tmp_path / "a.log").read_text("utf-8")


def test_a_failed_run_raises_naming_the_dag_and_the_process_goes_on(session: AirflowSession) -> None:
    first = pid(session)
    with pytest.raises(DagRunFailedError, match="DAG no_such_dag failed"):
        run_dag(session.home, "no_such_dag")  # inside the open session: its process
    assert "no_such_dag" in (session.home / "airflow" / "logs" / "no_such_dag.log").read_text("utf-8")
    assert pid(session) == first
    with dag_session(session.home) as inner:
        assert inner is session


def test_a_session_whose_process_died_says_so(tmp_path: Path) -> None:
    with dag_session(tmp_path) as doomed:
        assert doomed.command(["version"], tmp_path / "v.log") == 0
        os.kill(pid(doomed), signal.SIGKILL)
        with pytest.raises(DagRunFailedError, match=r"Airflow process .* ended"):
            doomed.command(["version"], tmp_path / "v.log")
    assert doomed._process is None


def test_the_process_ends_with_its_session(tmp_path: Path) -> None:
    with dag_session(tmp_path) as short:
        short.command(["version"], tmp_path / "v.log")
        process = short._process
    assert process is not None and process.returncode == 0
