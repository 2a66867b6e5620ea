"""`civicnet demo`: generate Shenzhen's department sources and run every DAG through Airflow, twice.

Every connector kind takes part. Round one: the statistics bureau's division file and public
security's residents (file drops, GB18030), civil affairs' facility register (an SQL database),
the health department's stations (its REST API, served on loopback while the demo runs), the
justice bureau's mediation committees (its Singer tap), then community work stations and civil
affairs push expenditure workbooks through the gateway, whose trigger runs the push feed's
ingest DAG and network_sync. Round two brings changes through every pull kind: 1 % of the
residents move or change, facilities are re-measured or closed (soft deletes), stations and
committees are updated; then network_sync. Running it again on the same home changes nothing.

The demo plays the departments too, so it holds their credentials: it generates them once per
home into `<home>/demo/secrets.json` (mode 0600) and hands them to Airflow as connections
through `AIRFLOW_CONN_*` environment variables, never in feed configs or logs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from civicnet.pipeline.runner import dag_session, run_dag
from connectors.secrets import env_name
from schemas.errors import TerminalError
from schemas.homefiles import make_folder, secret_modes, write_atomic
from schemas.layout import demo_folder, demo_secrets_file, feeds_folder

PULL_FEEDS = ("statistics_divisions", "public_security_residents", "civil_affairs_facilities",
              "health_stations", "justice_mediation_committees")
INGEST_ORDER = tuple(f"ingest_{slug}" for slug in PULL_FEEDS)
PUSH_FEED = "community_expenditures"
CHANGES_FILE = "residents_0002_changes.csv"
PUSH_COMMUNITIES = 3  # community work stations that push their own workbooks in the demo
TRIGGER_TIMEOUT_S = 900


class DemoHomeError(TerminalError):
    """The home holds a demo of another scale."""


def _ensure_feeds(home: Path, scale: float) -> None:
    from civicnet.demo.data import generate_feeds

    planted = feeds_folder(home) / "planted.json"
    if planted.exists():
        existing = json.loads(planted.read_text("utf-8"))
        if existing.get("scale") != scale:
            raise DemoHomeError(f"{home} holds a demo at scale {existing.get('scale')}, not {scale}; "
                                "use another --home or remove it (make clean)")
        return
    generate_feeds(home, scale)


def _once(home: Path, name: str, make: Callable[[], object]) -> None:
    """Run a generator step once per home (a stamp file records it), so re-running changes nothing."""
    stamp = demo_folder(home) / f"{name}.done"
    if stamp.exists():
        return
    result = make()
    make_folder(stamp.parent)
    stamp.write_text(json.dumps(result, ensure_ascii=False, default=str) + "\n", "utf-8")


def demo_secrets(home: Path) -> dict[str, str]:
    """The departments' credentials of this demo home, generated on first use (file mode 0600)."""
    path = demo_secrets_file(home)
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text("utf-8"))
        return stored
    values = {"health_api_token": secrets.token_urlsafe(24), "justice_tap_token": secrets.token_urlsafe(24)}
    write_atomic(make_folder(path.parent) / path.name, json.dumps(values), modes=secret_modes())
    return values


def set_connections(api_url: str, values: dict[str, str]) -> None:
    """Define the Airflow connections the demo feeds name, as Airflow's environment variables."""
    host, port = api_url.removeprefix("http://").split(":")
    os.environ[env_name("health_api")] = json.dumps(
        {"conn_type": "http", "host": host, "port": int(port), "extra": {"token": values["health_api_token"]}})
    token = values["justice_tap_token"]
    os.environ[env_name("justice_tap")] = json.dumps(
        {"conn_type": "generic", "extra": {"token": token,
                                           "expected_token_sha256": hashlib.sha256(token.encode()).hexdigest()}})


@contextlib.contextmanager
def department_services(home: Path) -> Iterator[None]:
    """The health department's API on loopback, and the connections every demo feed uses."""
    from civicnet.demo.departments.api import serve_api
    from civicnet.demo.departments.health import stations_path

    values = demo_secrets(home)
    with serve_api(stations_path(home), values["health_api_token"]) as api:
        set_connections(api.url, values)
        yield


def _generate_sources(home: Path, scale: float) -> None:
    from civicnet.context import registry
    from civicnet.demo.departments.health import generate_health
    from civicnet.demo.departments.justice import generate_justice

    _ensure_feeds(home, scale)
    _once(home, "health", lambda: generate_health(home, registry(), scale))
    _once(home, "justice", lambda: generate_justice(home, registry()))


def _round_two_changes(home: Path) -> None:
    from civicnet.demo.data import FACILITIES_FILE, generate_changes
    from civicnet.demo.departments.facilities import edit_facilities
    from civicnet.demo.departments.health import change_health
    from civicnet.demo.departments.justice import change_justice

    _once(home, "residents_changes", lambda: generate_changes(home, fraction=0.01, name=CHANGES_FILE))
    _once(home, "facility_edits", lambda: edit_facilities(feeds_folder(home) / FACILITIES_FILE, fraction=0.01))
    _once(home, "health_changes", lambda: change_health(home, fraction=0.05))
    _once(home, "justice_changes", lambda: change_justice(home, fraction=0.05))


def push_communities(home: Path) -> list[dict[str, Any]]:
    """Civil affairs and a few community work stations push expenditure workbooks through the real
    gateway on loopback; its `dags test` trigger ingests them all in one run and syncs the network.
    Returns receipts."""
    from civicnet.demo.gateway import push_through_gateway

    return push_through_gateway(home, PUSH_COMMUNITIES, TRIGGER_TIMEOUT_S)


def steps(home: Path, scale: float) -> list[tuple[str, Callable[[], object]]]:
    """The demo as named steps, in order."""
    def dag(dag_id: str) -> Callable[[], object]:
        return lambda: run_dag(home, dag_id)

    round_one = [(f"run {d}", dag(d)) for d in INGEST_ORDER] + [
        ("push community workbooks through the gateway", lambda: _once(home, "pushed", lambda: push_communities(home)))]
    round_two = [("generate round-two changes", lambda: _round_two_changes(home)),
                 *[(f"run {d}", dag(d)) for d in INGEST_ORDER if d != "ingest_statistics_divisions"],
                 ("run network_sync", dag("network_sync"))]
    return [("generate department sources", lambda: _generate_sources(home, scale)), *round_one, *round_two]


def run_demo(home: Path, scale: float, show_progress: bool = True) -> None:
    """Run every step with a progress bar; raises on the first failure.

    Every DAG run, the gateway's too, goes through one Airflow process (`dag_session`, started
    once the departments' connections are defined): Airflow starts once, not once a run."""
    todo = steps(home, scale)
    with tqdm(total=len(todo), disable=not show_progress, unit="step") as bar:
        bar.set_description("generate department sources")
        todo[0][1]()
        bar.update(1)
        with department_services(home), dag_session(home):
            for name, step in todo[1:]:
                bar.set_description(name)
                step()
                bar.update(1)
