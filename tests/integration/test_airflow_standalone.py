"""Airflow running for real on a civicnet home (`civicnet airflow`: `airflow standalone`), as an operator runs it.

One Airflow is started for the module on a copy of the session's demo home (tests/conftest.py;
the copy is this module's to change) and a free loopback port, with a user and
password of the simple auth manager (the way the gateway authenticates) and short parse and
heartbeat intervals. The tests read the DAG list through the REST API (the UI's API), and push a
batch through the real gateway with `--trigger airflow`: the gateway posts the landing asset
event, and the scheduler (no `dags test`) runs the push feed's ingest DAG and then network_sync,
until the pushed rows reach their community's extract. Airflow, and every task process it
started, is stopped at the end, also when a test fails.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import psutil
import pytest
import requests

from civicnet.demo.workbooks import expenditure_rows
from civicnet.gateway.airflow_api import AirflowApi, AirflowApiSettings, AirflowUnavailableError
from civicnet.gateway.app import GatewayServer
from civicnet.gateway.trigger import AirflowApiTrigger
from civicnet.pipeline.home import create_home
from connectors.feeds import load_feeds
from connectors.push.senders import add_sender
from schemas.divisions import load_registry
from schemas.media import CSV

pytestmark = pytest.mark.slow  # starts Airflow (about a minute) and waits for two scheduled DAG runs

REPO = Path(__file__).resolve().parents[2]
DATASET = "community_expenditures"
PUSH_DAG, NETWORK_DAG = "ingest_community_expenditures", "network_sync"
# bounds of the waits; under a shared, loaded 2-core machine the push's two DAG runs take 3-5 minutes
READY_WITHIN, REACHED_WITHIN = 240.0, 360.0
HEADER = ["支出编号", "社区代码", "年度", "季度", "支出类别", "金额", "说明"]
_COMMUNITIES = [d.code for d in load_registry(2020).by_tier("community") if not d.code.endswith("498")]
COMMUNITY, OTHER = _COMMUNITIES[0], _COMMUNITIES[1]  # in the district network_sync maps first


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Airflow:
    """A running `civicnet airflow` and how to reach it."""

    home: Path
    port: int
    api: AirflowApi
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def fast_test_config(tmp: Path, user: str, password: str) -> dict[str, str]:
    """Airflow settings that make a test Airflow quick and private: a user of the simple auth manager
    from a password file, short parse and heartbeat intervals, free ports for its log servers."""
    passwords = tmp / "passwords.json"
    passwords.write_text(json.dumps({user: password}))
    passwords.chmod(0o600)
    return {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
    }


def wait_until_ready(airflow: Airflow) -> None:
    """Wait (bounded) until the API answers with every civicnet DAG parsed."""
    wanted = {f"ingest_{slug}" for slug in load_feeds()} | {NETWORK_DAG}
    deadline = time.monotonic() + READY_WITHIN
    while time.monotonic() < deadline:
        if airflow.process.poll() is not None:
            pytest.fail(f"civicnet airflow exited with {airflow.process.returncode}:\n{tail(airflow.log)}")
        try:
            if wanted <= set(airflow.api.dag_ids()):
                return
        except AirflowUnavailableError:
            pass
        time.sleep(3)
    pytest.fail(f"Airflow did not serve every civicnet DAG within {READY_WITHIN:.0f} s:\n{tail(airflow.log)}")


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text("utf-8", errors="replace").splitlines()[-lines:])


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop Airflow's process group and every process it started (task workers start their own
    sessions): TERM, then KILL whatever is left after 15 s. psutil's handles refuse a reused pid."""
    try:
        started = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        started = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)  # its own session: the group id is its pid
        for child in started:  # also those that left the group
            with contextlib.suppress(psutil.NoSuchProcess):
                child.send_signal(sig)
        _, alive = psutil.wait_procs(started, timeout=15)
        if not alive and process.poll() is not None:
            break
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Airflow]:
    tmp = tmp_path_factory.mktemp("airflow-standalone")
    home, port = tmp / "home", free_port()
    create_home(home, "test")  # `civicnet airflow` runs on a home only; the demo home is copied into it below
    user, password = "civicnet-test", secrets.token_urlsafe(16)
    env = os.environ | fast_test_config(tmp, user, password) | {
        "PYTHONUNBUFFERED": "1",  # the log is read when a wait fails
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    log = tmp / "airflow.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "civicnet.cli", "--home", str(home), "airflow", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        api = AirflowApi(AirflowApiSettings(f"http://127.0.0.1:{port}", user, password, timeout=60))
        running = Airflow(home, port, api, process, log)
        # while Airflow starts (its tasks read the home only once a DAG runs): a built network,
        # nodes and extracts, that this module may change
        shutil.copytree(request.getfixturevalue("demo_home"), home, dirs_exist_ok=True)
        wait_until_ready(running)
        yield running
    finally:
        stop(process)


def test_civicnet_airflow_serves_the_dag_list_on_loopback(airflow: Airflow) -> None:
    dag_ids = airflow.api.dag_ids()
    listening = {c.laddr.ip for c in psutil.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == airflow.port}
    ui = requests.get(airflow.url + "/", timeout=60)

    assert set(dag_ids) == {f"ingest_{slug}" for slug in load_feeds()} | {NETWORK_DAG}
    assert listening == {"127.0.0.1"}
    assert ui.status_code == 200 and "<html" in ui.text.lower()


def expenditure_csv(code: str, seed: int) -> tuple[bytes, list[str]]:
    rows = list(expenditure_rows(code, random.Random(seed)))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8"), sorted(str(r[0]) for r in rows)


def extract_ids(home: Path, code: str) -> set[str]:
    """The expenditure ids in a community's published extract (empty while it is not there yet)."""
    path = home / "extracts" / "community" / f"{code}.duckdb"
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            return {r[0] for r in con.execute("SELECT expenditure_id FROM community_expenditures").fetchall()}
    except (duckdb.Error, OSError):  # not written yet, or being replaced
        return set()


def dag_runs(api: AirflowApi, dag_id: str) -> list[dict[str, object]]:
    return list(api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"])


def push(url: str, token: str, body: bytes) -> str:
    """Send one file to the gateway; its batch id."""
    answer = requests.post(f"{url}/v1/datasets/{DATASET}/batches", data=body, timeout=60,
                           headers={"Authorization": f"Bearer {token}", "Content-Type": CSV,
                                    "X-Filename": "expenditures.csv"})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["batch_id"])


def batch_status(url: str, token: str, batch_id: str) -> dict[str, Any]:
    answer = requests.get(f"{url}/v1/batches/{batch_id}", timeout=60, headers={"Authorization": f"Bearer {token}"})
    return dict(answer.json())


def test_a_push_reaches_its_community_extract_through_the_scheduler(airflow: Airflow) -> None:
    tokens = {code: add_sender(airflow.home, f"station-{code}", "community", None, code)
              for code in (COMMUNITY, OTHER)}
    (early, early_ids), (late, late_ids) = expenditure_csv(COMMUNITY, seed=9), expenditure_csv(OTHER, seed=10)
    trigger = AirflowApiTrigger(airflow.api, retry_pause=2)
    with GatewayServer(airflow.home, trigger) as gateway:
        waiting = push(gateway.url, tokens[COMMUNITY], early)  # Airflow created the DAGs paused
        assert trigger.wait_idle(60)
        refused = batch_status(gateway.url, tokens[COMMUNITY], waiting)
        for dag_id in (PUSH_DAG, NETWORK_DAG):  # what an operator does in the UI
            airflow.api.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        announced = push(gateway.url, tokens[OTHER], late)
        assert trigger.wait_idle(60)
        assert trigger.last_error(announced) is None
        deadline = time.monotonic() + REACHED_WITHIN
        while time.monotonic() < deadline and not (set(early_ids) <= extract_ids(airflow.home, COMMUNITY)
                                                   and set(late_ids) <= extract_ids(airflow.home, OTHER)):
            time.sleep(5)
        statuses = [batch_status(gateway.url, tokens[c], b) for c, b in ((COMMUNITY, waiting), (OTHER, announced))]

    assert refused["status"] == "received" and f"DAG {PUSH_DAG} is paused" in refused["error"]
    assert extract_ids(airflow.home, COMMUNITY) >= set(early_ids), tail(airflow.log)
    assert extract_ids(airflow.home, OTHER) >= set(late_ids)  # the waiting batch went with the announced one
    assert [(s["status"], s["counts"]["applied"], s["error"]) for s in statuses] == [
        ("applied", len(early_ids), None), ("applied", len(late_ids), None)]
    pushed_runs, network_runs = dag_runs(airflow.api, PUSH_DAG), dag_runs(airflow.api, NETWORK_DAG)
    assert [(r["run_type"], r["state"]) for r in pushed_runs] == [("asset_triggered", "success")]
    # the extracts are written by their districts' sync tasks, before the run's last tasks finish
    assert {(r["run_type"], r["state"]) for r in network_runs} <= {("asset_triggered", "running"),
                                                                     ("asset_triggered", "success")}
    assert network_runs
    assert not list((airflow.home / "airflow" / "logs").glob("ingest_*.log"))  # no `dags test` log
