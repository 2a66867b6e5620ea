"""End to end through real Airflow: workbooks pushed through the real gateway run the push feed's
ingest DAG and network_sync through the gateway's Airflow trigger (`airflow dags test`, SQLite
metadata), until the pushed rows are at every tier.

The home is a copy of the session's round-one home (tests/conftest.py): the pushes need a built
network, not one built through Airflow (test_dag_e2e.py runs the pull DAGs; apart from it, the two
modules run at once on `make test`'s two workers)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from test_dag_e2e import airflow_rows

from civicnet.pipeline import status

pytestmark = pytest.mark.slow


def test_pushed_workbooks_reach_every_tier_through_the_gateways_airflow_trigger(
        tmp_path: Path, home_copy: Callable[[Path], Path]) -> None:
    from civicnet.demo.gateway import push_through_gateway

    home = home_copy(tmp_path / "home")
    statuses = push_through_gateway(home, communities=1, timeout=600)
    assert [s["received"] == s["applied"] + s["quarantined"] + s["duplicates"] for s in statuses] == [True, True]
    station, department = statuses
    assert station["quarantined"] == 1 and department["quarantined"] == 0  # the planted row of another community
    collected = status.collect(home)
    by_tier = status.rows_by_tier(collected.nodes)
    pushed = station["applied"] + department["applied"]
    assert [by_tier[t]["community_expenditures"] for t in ("city", "district", "street", "community")] == [pushed] * 4
    reasons = collected.to_dict()["quarantine"]["community_expenditures"]
    assert "outside_jurisdiction" in json.dumps(reasons)
    runs = sorted(airflow_rows(home, "SELECT dag_id, state FROM dag_run"))
    # both workbooks landed before the trigger's run began: one ingest took them both, then one sync
    assert runs == [("ingest_community_expenditures", "success"), ("network_sync", "success")]
