"""Push-to-community latency: a community's batch through the gateway until it is in its extract,
with nobody running a command, on the embedded Airflow (`airflow standalone`) and on the Celery
service (`civicnet airflow up`). Target: under 60 s at scale 0.1 (issue 12).

On a built home (the bench's pipeline home after its cases), for each stack: start it on a free
loopback port with a bench user, wait until it serves every civicnet DAG, unpause the push feed's
ingest DAG and network_sync, start the real gateway with `--trigger airflow` on it, push one
quarter of a community's expenditures, and time from the POST until every pushed id is in that
community's extract (the gateway's asset event → ingest → the city asset → network_sync → the
district's sync task). The stack is stopped after, also on failure; the service's metadata database
is dropped. `python -m civicnet.bench.push_latency <home>` runs it alone.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import secrets
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import requests

from civicnet.gateway.airflow_api import AirflowApi, AirflowApiSettings, AirflowUnavailableError
from civicnet.gateway.app import GatewayServer
from civicnet.gateway.trigger import AirflowApiTrigger
from civicnet.pipeline.runner import processes, server
from connectors.feeds import load_feeds
from connectors.push.senders import add_sender
from schemas.divisions import load_registry
from schemas.homefiles import make_folder, write_atomic
from schemas.layout import airflow_service_folder, extract_file
from schemas.media import CSV

DATASET, PUSH_DAG, NETWORK_DAG = "community_expenditures", "ingest_community_expenditures", "network_sync"
HEADER = ["支出编号", "社区代码", "年度", "季度", "支出类别", "金额", "说明"]
READY_WITHIN, REACHED_WITHIN = 300.0, 600.0
STACKS = ("embedded", "celery")


@dataclass(frozen=True)
class Latency:
    """One stack's figures: seconds from start to serving the DAGs, and from the push to the extract."""

    stack: str
    start_s: float
    push_to_community_s: float | None  # None: not reached within REACHED_WITHIN
    rows: int
    community: str


def free_port() -> int:
    """A port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_user(home: Path) -> tuple[dict[str, str], str, str]:
    """A user of the simple auth manager for the bench (its password in an owner-only file), and the
    short parse and heartbeat intervals of the tests' Airflow."""
    user, password = "civicnet-bench", secrets.token_urlsafe(16)
    passwords = airflow_service_folder(home) / "bench-passwords.json"
    make_folder(passwords.parent)
    write_atomic(passwords, json.dumps({user: password}))
    env = {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{user}:admin",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
           "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5", "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
           "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2", "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2"}
    return env, user, password


@contextmanager
def embedded(home: Path, port: int, env: dict[str, str]) -> Iterator[None]:
    """`civicnet airflow` (standalone) on the home, in its own process group, stopped after."""
    argv = [sys.executable, "-m", "civicnet.cli", "--home", str(home), "airflow", "--port", str(port)]
    run = airflow_service_folder(home) / "bench-run"
    record = processes.start(run, "standalone", argv, os.environ | env, run / "standalone.log", port)
    try:
        yield
    finally:
        processes.stop(run, record)


@contextmanager
def celery(home: Path, port: int, env: dict[str, str]) -> Iterator[None]:
    """`civicnet airflow up` on the home with a database of its own, brought down (and dropped) after."""
    database = f"civicnet_bench_{server.home_key(home)}"
    config = server.ServiceConfig(home, port=port, database=database, extra_env=env)
    try:
        server.up(config)
        yield
    finally:
        server.down(home)
        _drop_database(database)


def _drop_database(name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server.DEFAULT_POSTGRES + "/postgres", autocommit=True, connect_timeout=5) as con:
        con.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def expenditures(code: str, seed: int) -> tuple[bytes, set[str]]:
    """One community's quarter as the CSV a work station pushes, and its ids."""
    from civicnet.demo.workbooks import expenditure_rows

    rows = list(expenditure_rows(code, random.Random(seed)))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows([HEADER, *rows])
    return out.getvalue().encode("utf-8"), {str(r[0]) for r in rows}


def extract_ids(home: Path, code: str) -> set[str]:
    """The expenditure ids in a community's extract (empty while it is not written)."""
    try:
        with duckdb.connect(str(extract_file(home, code)), read_only=True) as con:
            return {r[0] for r in con.execute(f"SELECT expenditure_id FROM {DATASET}").fetchall()}
    except (duckdb.Error, OSError):
        return set()


def wait_ready(api: AirflowApi, within: float = READY_WITHIN) -> None:
    """Wait until Airflow serves every civicnet DAG; raise if it does not in time."""
    wanted = {f"ingest_{slug}" for slug in load_feeds()} | {NETWORK_DAG}
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if wanted <= set(api.dag_ids()):
                return
        except AirflowUnavailableError:
            pass
        time.sleep(2)
    raise TimeoutError(f"Airflow did not serve every civicnet DAG within {within:.0f} s")


def push_and_wait(home: Path, api: AirflowApi, code: str, seed: int, within: float = REACHED_WITHIN) -> tuple[
        float | None, int]:
    """Push one community's quarter through the gateway on `api`; seconds until it is in the
    community's extract (None if not within `within`), and the rows pushed."""
    token = add_sender(home, f"bench-{code}-{seed}", "community", None, code)
    body, ids = expenditures(code, seed)
    with GatewayServer(home, AirflowApiTrigger(api, retry_pause=2)) as gateway:
        started = time.monotonic()
        answer = requests.post(f"{gateway.url}/v1/datasets/{DATASET}/batches", data=body, timeout=60,
                               headers={"Authorization": f"Bearer {token}", "Content-Type": CSV,
                                        "X-Filename": "expenditures.csv"})
        answer.raise_for_status()
        while time.monotonic() - started < within:
            if ids <= extract_ids(home, code):
                return time.monotonic() - started, len(ids)
            time.sleep(0.5)
    return None, len(ids)


def measure(home: Path, stack: str, seed: int) -> Latency:
    """Start one stack on the home, push, time it, stop the stack."""
    env, user, password = bench_user(home)
    port = free_port()
    api = AirflowApi(AirflowApiSettings(f"http://127.0.0.1:{port}", user, password, timeout=60))
    code = next(d.code for d in load_registry().by_tier("community") if not d.code.endswith("498"))
    start = time.monotonic()
    with (embedded if stack == "embedded" else celery)(home, port, env):
        wait_ready(api)
        ready = time.monotonic() - start
        for dag_id in (PUSH_DAG, NETWORK_DAG):
            api.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        seconds, rows = push_and_wait(home, api, code, seed)
    return Latency(stack, ready, seconds, rows, code)


def run(home: Path, stacks: tuple[str, ...] = STACKS) -> list[dict[str, Any]]:
    """Each stack's figures, in order (for results.json)."""
    return [asdict(measure(home, stack, seed)) for seed, stack in enumerate(stacks, start=1)]


def render(figures: list[dict[str, Any]]) -> list[str]:
    """The bench's table of push-to-community latency."""
    lines = [f"{'stack':<10} {'start s':>8} {'push → community extract s':>27} {'rows':>5}  (target < 60 s)"]
    for f in figures:
        took = f["push_to_community_s"]
        shown = "not reached" if took is None else f"{took:.1f}"
        lines.append(f"{f['stack']:<10} {f['start_s']:>8.1f} {shown:>27} {f['rows']:>5}")
    return lines


if __name__ == "__main__":
    print("\n".join(render(run(Path(sys.argv[1]).resolve(), tuple(sys.argv[2:]) or STACKS))))
