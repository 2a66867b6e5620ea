"""End to end through real Airflow: the ingest DAGs and network_sync on a tiny Shenzhen.

One home is built for the module (Airflow's start-up costs tens of seconds): feeds at scale
0.0005, the five pull ingest DAGs (file drops, the SQL register, the health API on loopback, the
justice Singer tap), then network_sync, all through `civicnet.pipeline.runner.run_dag` on SQLite
metadata, in one Airflow process (`dag_session`, as the demo runs them; the later runs start one
each) (workbooks pushed through the gateway's Airflow trigger: test_dag_push.py, on a home of
its own, so that `make test`'s two workers run the two at once). What round one left behind is captured
in the fixture, so the refusal test, which drops a bad file into the same home, cannot
change what the round-one tests see.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from civicnet import context
from civicnet.demo.data import generate_feeds
from civicnet.demo.departments.health import generate_health
from civicnet.demo.departments.justice import generate_justice
from civicnet.demo.run import department_services
from civicnet.pipeline import status
from civicnet.pipeline.runner import DagRunFailedError, dag_session, run_dag
from civicnet.pipeline.status import Status
from schemas.citizen_id import check_char
from warehouse import landing

pytestmark = pytest.mark.slow

SCALE = 0.0005
INGEST = ("ingest_statistics_divisions", "ingest_public_security_residents",
          "ingest_civil_affairs_facilities", "ingest_health_stations", "ingest_justice_mediation_committees")
RESIDENTS_FEED = "public_security_residents"
RESIDENTS_DIR = Path("feeds/public_security/residents")
BAD_DROP = "residents_0002_bad_check_digits.csv"
NODES = 899  # 1 city, 9 districts, their streets and communities (2020 registry)
DISTRICTS = 9


@dataclass(frozen=True)
class RoundOne:
    """A home after the three ingest DAGs and network_sync, and what it looked like then."""

    home: Path
    index: dict[str, Any]
    status: Status
    dag_runs: list[tuple[str, str]]
    sync_tasks: list[tuple[int, str]]


def airflow_rows(home: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Rows from the Airflow metadata database of a home, opened read-only."""
    con = sqlite3.connect(f"file:{home / 'airflow' / 'airflow.db'}?mode=ro", uri=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def city_rows(home: Path, dataset: str) -> int:
    con = context.open_city(home, read_only=True)
    try:
        row = con.execute(f'SELECT count(*) FROM city."{dataset}"').fetchone()
    finally:
        con.close()
    assert row is not None
    return int(row[0])


def write_bad_drop(home: Path, rows: int = 20, bad: int = 10) -> Path:
    """A residents drop in the generated file's encoding and header; `bad` rows fail the check digit."""
    planted = json.loads((home / "feeds" / "planted.json").read_text("utf-8"))
    planted_lines = {p["line"] for p in planted["residents"]["planted_rows"]}
    source = home / RESIDENTS_DIR / "residents_0001_initial.csv"
    header, *body = csv.reader(io.StringIO(source.read_bytes().decode("gb18030"), newline=""))
    good = [r for line, r in enumerate(body, start=1) if line not in planted_lines][:rows]
    for row in good[:bad]:
        first17, digit = row[0][:17], row[0][17]
        wrong = next(c for c in "0123456789X" if c != check_char(first17))
        assert wrong != digit
        row[0] = first17 + wrong
    text = io.StringIO(newline="")
    csv.writer(text, lineterminator="\n").writerows([header, *good])
    path = home / RESIDENTS_DIR / BAD_DROP
    path.write_bytes(text.getvalue().encode("gb18030"))
    return path


@pytest.fixture(scope="module")
def round_one(tmp_path_factory: pytest.TempPathFactory) -> RoundOne:
    home = tmp_path_factory.mktemp("e2e")
    generate_feeds(home, SCALE)
    generate_health(home, context.registry(), SCALE)
    generate_justice(home, context.registry())
    # the health API on loopback and the connections (REST token, tap token) in AIRFLOW_CONN_*;
    # the round in one Airflow process, as the demo runs it (the later runs each start their own)
    with department_services(home), dag_session(home):
        for dag_id in (*INGEST, "network_sync"):
            run_dag(home, dag_id)
    return RoundOne(
        home=home,
        index=json.loads((home / "extracts" / "network.json").read_text("utf-8")),
        status=status.collect(home),
        dag_runs=sorted(airflow_rows(home, "SELECT dag_id, state FROM dag_run")),
        sync_tasks=sorted(airflow_rows(home, """SELECT task_id, map_index, pool, state FROM task_instance
            WHERE dag_id = 'network_sync' AND task_id LIKE 'sync_%'""")),
    )


def test_network_index_lists_every_node_with_its_extract(round_one: RoundOne) -> None:
    nodes = round_one.index["nodes"]
    assert len(nodes) == NODES
    assert len({n["code"] for n in nodes}) == NODES
    assert sum(n["tier"] == "district" for n in nodes) == DISTRICTS
    # extracts are named relative to the home (a moved home still reads)
    assert [n["code"] for n in nodes if Path(n["extract"]).is_absolute()] == []
    assert [n["code"] for n in nodes if not (round_one.home / n["extract"]).is_file()] == []


def test_every_tier_holds_every_row_of_every_pulled_kind(round_one: RoundOne) -> None:
    by_tier = status.rows_by_tier(round_one.status.nodes)
    city = by_tier["city"]
    kinds = ("residents", "facilities", "health_stations", "mediation_committees")  # files, SQL, REST, Singer
    assert all(city[d] > 0 for d in kinds)
    for tier in ("district", "street", "community"):
        assert [by_tier[tier][d] for d in kinds] == [city[d] for d in kinds], tier


def test_every_batch_applied_and_balanced(round_one: RoundOne) -> None:
    batches = round_one.status.batches
    assert sorted(b.feed for b in batches) == sorted(d.removeprefix("ingest_") for d in INGEST)
    assert [(b.feed, b.status, b.balanced) for b in batches
            if b.status != "applied" or not b.balanced] == []


def test_airflow_recorded_successful_runs(round_one: RoundOne) -> None:
    assert round_one.dag_runs == sorted((d, "success") for d in (*INGEST, "network_sync"))


def test_network_sync_ran_one_task_per_district_in_its_pool(round_one: RoundOne) -> None:
    codes = context.districts()
    assert len(codes) == DISTRICTS
    assert round_one.sync_tasks == [(f"sync_{c}", -1, f"civicnet_district_{c}", "success") for c in codes]


@pytest.fixture(scope="module")
def refused(round_one: RoundOne) -> dict[str, Any]:
    """Drop a file with half its check digits wrong and run the residents DAG on it."""
    home = round_one.home
    before = city_rows(home, "residents")
    write_bad_drop(home)
    with pytest.raises(DagRunFailedError) as caught:
        run_dag(home, f"ingest_{RESIDENTS_FEED}")
    return {"error": caught.value, "before": before, "after": city_rows(home, "residents"),
            "status": status.collect(home)}


def test_refused_batch_fails_the_run_and_leaves_the_city_alone(round_one: RoundOne,
                                                              refused: dict[str, Any]) -> None:
    home = round_one.home
    (batch,) = [b for b in refused["status"].batches if b.source_name == BAD_DROP]
    assert (batch.status, batch.gate, batch.applied) == ("refused", "fail", 0)
    assert refused["after"] == refused["before"]
    assert f"ingest_{RESIDENTS_FEED}" in str(refused["error"])
    landed = [m.batch_id for m in landing.landed_batches(home, "residents", RESIDENTS_FEED)]
    assert batch.batch_id in landed  # it stays in landing


def test_airflow_shows_the_refusal_as_a_failed_check_without_retries(round_one: RoundOne,
                                                                     refused: dict[str, Any]) -> None:
    runs = airflow_rows(round_one.home, """SELECT run_id, state FROM dag_run WHERE dag_id = ?
                                           ORDER BY id""", f"ingest_{RESIDENTS_FEED}")
    assert [state for _, state in runs] == ["success", "failed"]
    tasks = dict(airflow_rows(round_one.home, """SELECT task_id, state || ' try ' || try_number
        FROM task_instance WHERE dag_id = ? AND run_id = ?""", f"ingest_{RESIDENTS_FEED}", runs[-1][0]))
    assert tasks["check"] == "failed try 1"
    assert tasks["merge"].startswith("success")
    assert tasks["summarise"].startswith("upstream_failed")


def test_nothing_airflow_or_the_tasks_wrote_is_readable_by_others(round_one: RoundOne) -> None:
    """The metadata database, task logs and everything the tasks wrote are owner-only (the
    departments' drops under feeds/ are theirs)."""
    home = round_one.home
    opened = [f"{oct(stat.S_IMODE(p.lstat().st_mode))} {p.relative_to(home)}" for p in (home, *home.rglob("*"))
              if p.relative_to(home).parts[:1] != ("feeds",) and not p.is_symlink()
              and stat.S_IMODE(p.lstat().st_mode) & 0o077]

    assert (home / "airflow" / "airflow.db").exists() and any((home / "airflow" / "logs").rglob("*.log"))
    assert opened == []


def city_events(home: Path, dag_id: str, run_id: str) -> int:
    """How many `civicnet://nodes/city` asset events one DAG run emitted."""
    ((count,),) = airflow_rows(home, """SELECT count(*) FROM asset_event e JOIN asset a ON a.id = e.asset_id
        WHERE a.uri = 'civicnet://nodes/city' AND e.source_dag_id = ? AND e.source_run_id = ?""", dag_id, run_id)
    return int(count)


def run_ids(home: Path, dag_id: str) -> list[str]:
    return [r for (r,) in airflow_rows(home, "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id", dag_id)]


def task_states(home: Path, dag_id: str, run_id: str) -> dict[str, str]:
    return dict(airflow_rows(home, """SELECT task_id, state || ' try ' || try_number FROM task_instance
        WHERE dag_id = ? AND run_id = ? AND map_index <= 0""", dag_id, run_id))


@pytest.fixture(scope="module")
def quiet_runs(round_one: RoundOne) -> dict[str, Any]:
    """Round one again for the division feed (nothing new), and a facilities pull that fails: its
    SQLite register is moved away for the run."""
    home = round_one.home
    noop_log = run_dag(home, "ingest_statistics_divisions")
    register = home / "feeds" / "civil_affairs" / "facilities.sqlite"
    moved = register.with_name("facilities.sqlite.away")
    register.rename(moved)
    try:
        with pytest.raises(DagRunFailedError) as caught:
            run_dag(home, "ingest_civil_affairs_facilities")
    finally:
        moved.rename(register)
    return {"noop_log": noop_log, "pull_error": caught.value}


def test_every_changing_ingest_run_emitted_one_city_event(round_one: RoundOne) -> None:
    firsts = {d: run_ids(round_one.home, d)[0] for d in INGEST}
    assert {d: city_events(round_one.home, d, r) for d, r in firsts.items()} == dict.fromkeys(INGEST, 1)


def test_a_run_that_pulls_nothing_new_emits_no_city_event(round_one: RoundOne, quiet_runs: dict[str, Any]) -> None:
    dag_id = "ingest_statistics_divisions"
    first, again = run_ids(round_one.home, dag_id)[:2]
    assert city_events(round_one.home, dag_id, again) == 0 and city_events(round_one.home, dag_id, first) == 1
    states = task_states(round_one.home, dag_id, again)
    assert states["merge"].startswith("skipped") and states["announce"].startswith("skipped")  # nothing to merge


def test_a_refused_batch_emits_no_city_event(round_one: RoundOne, refused: dict[str, Any]) -> None:
    dag_id = f"ingest_{RESIDENTS_FEED}"
    last = run_ids(round_one.home, dag_id)[-1]
    states = task_states(round_one.home, dag_id, last)
    assert states["merge"] == "success try 1" and states["announce"].startswith("skipped")
    assert city_events(round_one.home, dag_id, last) == 0


def test_a_failed_pull_fails_at_once_with_its_own_message_and_nothing_runs_after_it(
        round_one: RoundOne, quiet_runs: dict[str, Any]) -> None:
    dag_id = "ingest_civil_affairs_facilities"
    last = run_ids(round_one.home, dag_id)[-1]
    states = task_states(round_one.home, dag_id, last)
    assert states["pull"] == "failed try 1"  # terminal: no retries
    assert {states[t].split(" try ")[0] for t in ("check", "merge", "announce")} == {"upstream_failed"}
    assert "facilities.sqlite" in str(quiet_runs["pull_error"])  # the pull's message, not a merge TypeError
    assert "TypeError" not in (round_one.home / "airflow" / "logs" / f"{dag_id}.log").read_text("utf-8")
    assert city_events(round_one.home, dag_id, last) == 0


def test_cli_status_prints_json(round_one: RoundOne) -> None:
    exe = Path(sys.executable).parent / "civicnet"
    done = subprocess.run([str(exe), "status", "--json", "--home", str(round_one.home)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = json.loads(done.stdout)
    assert {"vintage", "nodes", "quarantine", "batches"} <= set(printed)
    assert (printed["vintage"], len(printed["nodes"])) == (context.VINTAGE, NODES)
