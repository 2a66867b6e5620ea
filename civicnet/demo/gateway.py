"""The demo's push round: community work stations and civil affairs send workbooks through the gateway.

A real gateway (uvicorn on loopback) with the `dags test` trigger: every accepted batch is landed,
then the push feed's ingest DAG and network_sync run through `airflow dags test`, as the landing
asset event starts them under a running scheduler (`--trigger airflow`). The pushes arrive while
the demo holds the trigger's `node_lock`, as they would while a run held the city node: the
trigger's next run takes every batch that waits, so the burst costs one ingest and one sync, not
one of each for the first batch and again for the rest. Each sender pushes with the real client
(`civicnet push`), which checks the file locally first. The first community's workbook carries one
row of another community: the gateway applies the rest and quarantines that row as
`outside_jurisdiction`.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import requests

from civicnet import context
from civicnet.demo.workbooks import write_expenditure_files
from civicnet.gateway.app import GatewayServer
from civicnet.gateway.trigger import DagsTestTrigger
from civicnet.pipeline.push import push
from civicnet.pipeline.runner import DagRunFailedError, dag_session
from connectors.push.senders import add_sender, list_senders, revoke_sender
from schemas.divisions import is_virtual_community

DATASET = "community_expenditures"
DEPARTMENT = "civil_affairs"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def pick_communities(n: int) -> list[str]:
    """`n` non-virtual communities spread over the districts (deterministic)."""
    codes = sorted(d.code for d in context.registry().by_tier("community") if not is_virtual_community(d.code))
    step = max(1, len(codes) // n)
    return codes[::step][:n]


def _sender(home: Path, sender_id: str, kind: str, department: str | None, division: str | None = None) -> str:
    """A fresh token for a demo sender (a re-run revokes the old one first)."""
    if any(s.sender_id == sender_id for s in list_senders(home)):
        revoke_sender(home, sender_id)
    return add_sender(home, sender_id, kind, department, division)


def _push(url: str, token: str, path: Path) -> dict[str, Any]:
    """Push one workbook with the real client (it checks the file first); its receipt."""
    out, err = io.StringIO(), io.StringIO()
    if push(url, token, DATASET, path, report=False, wait=0, out=out, err=err,
            today=dt.datetime.now(SHANGHAI).date()) != 0:
        raise DagRunFailedError(f"the demo push of {path} failed: {err.getvalue().strip()}")
    receipt: dict[str, Any] = json.loads(out.getvalue())
    return receipt


def push_through_gateway(home: Path, communities: int, timeout: float) -> list[dict[str, Any]]:
    """Push one workbook per community (each by its own work station, and one more by civil affairs),
    wait for the trigger's Airflow runs, and return each batch's final status."""
    codes = pick_communities(communities + 1)
    files = write_expenditure_files(home, context.registry(), codes, seed=2021)
    # the first file (with the planted foreign row) is its work station's; civil affairs sends the last
    tokens = {code: _sender(home, f"station-{code}", "community", None, code) for code in codes[:-1]}
    tokens[codes[-1]] = _sender(home, "civil-affairs-demo", "department", DEPARTMENT)
    trigger = DagsTestTrigger(home)
    with dag_session(home), GatewayServer(home, trigger) as server:
        url = server.url
        with trigger.node_lock:  # every push lands before the trigger's run starts: they all join it
            receipts = {code: _push(url, tokens[code], path) for code, path in files.items()}
        if not trigger.wait_idle(timeout):
            raise DagRunFailedError(f"the gateway's Airflow runs did not finish within {timeout:.0f} s")
        statuses = []
        for code, receipt in receipts.items():
            answer = requests.get(url + receipt["status_url"], headers={"Authorization": f"Bearer {tokens[code]}"},
                                  timeout=30)
            status = answer.json()
            if status["status"] != "applied":
                raise DagRunFailedError(f"pushed batch {receipt['batch_id']} ({receipt['file']}) ended "
                                        f"{status['status']}: {status.get('error') or status.get('gate')}")
            statuses.append({"community": code, "file": receipt["file"], "batch_id": receipt["batch_id"]}
                            | status["counts"])
        return statuses
