"""Airflow as a service for real (`civicnet airflow up`): PostgreSQL metadata, scheduler, DAG processor,
API server, triggerer and two Celery workers on the machine's Redis, all on loopback.

The stack is brought up once for this module (`civicnet airflow up` in a subprocess, as an operator
runs it) on a copy of the session's round-one home, a fresh metadata database and a Redis db of
its own, with a user of the simple auth manager and short parse and heartbeat intervals; it is
always brought down and its database dropped, also when a test fails. A residents change file is
dropped into the feed's folder and its DAG unpaused: the scheduler runs the daily ingest, then
network_sync on the city asset (no `dags trigger` at all); the task instances must have run
on both workers; then the invariants hold on every node. A community then pushes through the
real gateway (`--trigger airflow` on the service's API) and its rows reach its node and extract
through the scheduler alone. The last test stops the service and checks that nothing it started
is left: processes, the API port, the Redis keys of its prefix.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import psutil
import psycopg
import pytest
import redis

from civicnet.bench.invariants import check as check_invariants
from civicnet.bench.push_latency import expenditures, extract_ids, push_and_wait
from civicnet.demo.data import generate_changes
from civicnet.gateway.airflow_api import AirflowApi, AirflowApiSettings, AirflowUnavailableError
from civicnet.pipeline.home import create_home
from civicnet.pipeline.runner import processes, server
from connectors.feeds import load_feeds
from schemas.divisions import load_registry
from schemas.layout import node_file

pytestmark = pytest.mark.slow  # starts the whole stack (about a minute) and waits for scheduled DAG runs

REPO = Path(__file__).resolve().parents[2]
RESIDENTS_DAG, NETWORK_DAG = "ingest_public_security_residents", "network_sync"
PUSH_DAG = "ingest_community_expenditures"
REDIS_DB = 12  # this module's Redis database; the deployment's key prefix is the home's own too
# bounds of the waits: two DAG runs of about 15 tasks on two workers of a shared 2-core machine
READY_WITHIN, RUN_WITHIN = 240.0, 480.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    """A running `civicnet airflow up` and how to reach it."""

    home: Path
    port: int
    database: str
    api: AirflowApi
    env: dict[str, str]
    records: list[processes.ProcessRecord]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "civicnet.cli", "--home", str(self.home), "airflow", *args],
                              env=self.env, capture_output=True, text=True, timeout=600, check=False)


def fast_config(tmp: Path, user: str, password: str) -> dict[str, str]:
    """Settings that make a test Airflow quick and private: a user from a password file, short intervals."""
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
    }


def drop_database(name: str) -> None:
    with psycopg.connect("postgresql://127.0.0.1:5432/postgres", autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_for(what: str, done: Callable[[], bool], within: float, log: Path) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(AirflowUnavailableError):
            if done():
                return
        time.sleep(3)
    pytest.fail(f"{what} not within {within:.0f} s; logs in {log}")


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory, home_copy: Callable[[Path], Path]) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("airflow-service")
    home, port = tmp / "home", free_port()
    create_home(home, "test")
    home_copy(home)  # a built network on round one, this module's to change
    database = f"civicnet_i12af_test_{secrets.token_hex(4)}"
    user, password = "civicnet-test", secrets.token_urlsafe(16)
    env = os.environ | fast_config(tmp, user, password) | {
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    api = AirflowApi(AirflowApiSettings(f"http://127.0.0.1:{port}", user, password, timeout=60))
    running = Service(home, port, database, api, env, [])
    try:
        up = running.cli("up", "--port", str(port), "--database", database,
                         "--redis", f"redis://127.0.0.1:6379/{REDIS_DB}")
        assert up.returncode == 0, up.stdout + up.stderr
        deployment = server.read_deployment(home)
        assert deployment is not None
        running.records = [r for n in deployment.components()
                           if (r := processes.read_record(server.run_folder(home), n)) is not None]
        wanted = {f"ingest_{slug}" for slug in load_feeds()} | {NETWORK_DAG}
        wait_for("every civicnet DAG parsed", lambda: wanted <= set(api.dag_ids()), READY_WITHIN,
                 server.log_file(home, "scheduler").parent)
        yield running
    finally:
        running.cli("down")
        drop_database(database)


def dag_runs(api: AirflowApi, dag_id: str) -> list[dict[str, Any]]:
    return list(api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"])


def task_instances(api: AirflowApi, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    return list(api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                            params={"limit": 100})["task_instances"])


def finished(api: AirflowApi, dag_id: str) -> bool:
    runs = dag_runs(api, dag_id)
    return bool(runs) and all(r["state"] in ("success", "failed") for r in runs)


def test_up_again_starts_nothing_and_says_what_runs(service: Service) -> None:
    again = service.cli("up", "--port", str(service.port), "--database", service.database,
                        "--redis", f"redis://127.0.0.1:6379/{REDIS_DB}")
    listening = {c.laddr.ip for c in psutil.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == service.port}

    assert again.returncode == 0, again.stderr
    assert "already runs" in again.stdout and again.stdout.count("running, pid") == 6
    assert [(r.name, processes.is_running(r)) for r in service.records] == [
        (n, True) for n in ("api-server", "scheduler", "dag-processor", "triggerer", "worker-1", "worker-2")]
    assert listening == {"127.0.0.1"}
    assert service.cli("status").returncode == 0


def test_a_dropped_file_runs_ingest_then_network_sync_on_both_workers(service: Service) -> None:
    api = service.api
    before = len(dag_runs(api, NETWORK_DAG))
    generate_changes(service.home, fraction=0.01)  # the department drops its change file
    for dag_id in (NETWORK_DAG, RESIDENTS_DAG):  # Airflow creates DAGs paused; unpaused, the daily feed runs
        api.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
    wait_for("the residents ingest and then network_sync", lambda: finished(api, RESIDENTS_DAG)
             and len(dag_runs(api, NETWORK_DAG)) > before and finished(api, NETWORK_DAG), RUN_WITHIN,
             server.log_file(service.home, "scheduler").parent)

    (ingest,) = dag_runs(api, RESIDENTS_DAG)
    network = dag_runs(api, NETWORK_DAG)
    tis = [ti for dag_id, runs in ((RESIDENTS_DAG, [ingest]), (NETWORK_DAG, network)) for r in runs
           for ti in task_instances(api, dag_id, r["dag_run_id"])]
    hosts = {ti["hostname"] for ti in tis if ti["state"] == "success"}
    assert (ingest["run_type"], ingest["state"]) == ("scheduled", "success")  # the scheduler's own run
    assert [(r["run_type"], r["state"]) for r in network] == [("asset_triggered", "success")]
    assert {h.split("@")[0] for h in hosts} == {"worker-1", "worker-2"}, hosts
    assert {ti["pool"] for ti in tis if ti["task_id"].startswith("sync_")} == {
        f"civicnet_district_{ti['task_id'].removeprefix('sync_')}" for ti in tis if ti["task_id"].startswith("sync_")}
    checked = check_invariants(service.home)
    assert checked["hold"], {k: v for k, v in checked.items() if k != "hold"}
    assert checked["nodes"] > 800
    verify = subprocess.run([sys.executable, "-m", "civicnet.cli", "--home", str(service.home), "verify"],
                            env=service.env, capture_output=True, text=True, timeout=600, check=False)
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr[-2000:]


def test_a_push_reaches_its_community_node_and_extract_through_the_scheduler_alone(
        service: Service, record_property: Callable[[str, object], None]) -> None:
    api = service.api
    api.request("PATCH", f"/api/v2/dags/{PUSH_DAG}", json={"is_paused": False})  # network_sync is already
    code = next(d.code for d in load_registry().by_tier("community") if not d.code.endswith("498"))
    runs_before = len(dag_runs(api, NETWORK_DAG))

    seconds, rows = push_and_wait(service.home, api, code, seed=31, within=RUN_WITHIN)
    record_property("push_to_community_s", seconds)  # the latency is measured by make bench, not asserted
    print(f"push to community {code}: {seconds} s for {rows} rows on the Celery service")
    _, ids = expenditures(code, seed=31)
    with duckdb.connect(str(node_file(service.home, code)), read_only=True) as con:
        in_node = {r[0] for r in con.execute("SELECT expenditure_id FROM community_expenditures").fetchall()}
    pushed = dag_runs(api, PUSH_DAG)

    assert seconds is not None, f"not in {code}'s extract within {RUN_WITHIN:.0f} s"
    assert ids <= extract_ids(service.home, code) and ids <= in_node and rows == len(ids)
    assert [(r["run_type"], r["state"]) for r in pushed] == [("asset_triggered", "success")]
    assert len(dag_runs(api, NETWORK_DAG)) > runs_before  # woken by the city asset, not by hand
    assert all(r["run_type"] == "asset_triggered" for r in dag_runs(api, NETWORK_DAG))


def test_down_stops_every_process_and_leaves_no_port_or_broker_key(service: Service) -> None:
    deployment = server.read_deployment(service.home)
    assert deployment is not None
    keys_while_up = server.broker_keys(deployment)
    family = [p for r in service.records if processes.is_running(r)
              for p in [psutil.Process(r.pid), *psutil.Process(r.pid).children(recursive=True)]]

    down = service.cli("down")
    again = service.cli("down")
    alive = [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    listening = [c for c in psutil.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == service.port]
    keys = redis.Redis(db=REDIS_DB).keys(f"{deployment.key_prefix}*")

    assert keys_while_up and len(family) >= 6
    assert down.returncode == 0 and down.stdout.startswith("stopped scheduler"), down.stderr
    assert (again.returncode, again.stdout.strip()) == (0, f"no Airflow service runs on {service.home}")
    assert alive == [] and listening == [] and keys == []
    assert not list(server.run_folder(service.home).glob("*.json"))
