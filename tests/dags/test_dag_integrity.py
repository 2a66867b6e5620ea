"""DAG integrity: every file in dags/ parses, follows the DAG policy, has the agreed shape, stays thin.

The DagBag is loaded in this process with AIRFLOW_HOME in a temporary folder (set before
Airflow is first imported, which happens inside the fixture), and dags/ on sys.path because
the DAG files import `task_policy` the way Airflow's DAG processor makes them.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from civicnet.context import districts
from civicnet.pipeline.pools import CITY_POOL, district_pool, pool_specs
from connectors.feeds import load_feeds

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
DAG_FILES = sorted(DAGS.glob("*.py"))
FEEDS = load_feeds()
INGEST_IDS = sorted(f"ingest_{slug}" for slug in FEEDS)
ALL_IDS = [*INGEST_IDS, "network_sync"]
CITY_ASSET = "civicnet://nodes/city"
# What a DAG file may not pull in while Airflow parses it: heavy libraries and our packages
# that do the work (they are imported inside the tasks).
HEAVY_MODULES = ("duckdb", "great_expectations", "pyarrow", "civicnet", "warehouse", "quality",
                 "connectors.parse", "connectors.parse_jsonl", "connectors.parse_xlsx", "connectors.registry",
                 "connectors.files", "connectors.sql")
# the pipeline API a DAG file imports at parse time: the package only, its names resolved on first use
LIGHT_API = {"civicnet", "civicnet.pipeline", "civicnet.pipeline.pools"}
CLOCK_CALLS = {"now", "utcnow", "today"}


def airflow_env(home: Path) -> dict[str, str]:
    """Environment that keeps Airflow away from ~/airflow and its example DAGs."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
    }


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("airflow_home")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in airflow_env(home).items():
            mp.setenv(key, value)
        mp.syspath_prepend(str(DAGS))
        yield home


@pytest.fixture(scope="module")
def dagbag(airflow_home: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS), safe_mode=False,
                  known_pools={"default_pool", *(p.name for p in pool_specs())})


def upstream(dag: Any, task_id: str) -> set[str]:
    return set(dag.get_task(task_id).upstream_task_ids)


def mapped_over(task: Any) -> dict[str, str]:
    """The keyword a mapped @task expands over → the task whose XCom feeds it."""
    expand = task.op_kwargs_expand_input.value
    return {name: arg.operator.task_id for name, arg in expand.items()}


# --- import errors --------------------------------------------------------------------------

@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_without_errors(dagbag: Any, path: Path) -> None:
    parsed = {stat.file for stat in dagbag.dagbag_stats}
    assert path.name in parsed, f"the DagBag did not parse {path.name}"
    errors = {f: e for f, e in dagbag.import_errors.items() if Path(f).name == path.name}
    assert errors == {}


def test_dags_reference_only_existing_pools(dagbag: Any) -> None:
    assert dagbag.dag_warnings == set()


def test_dags_reference_a_pool_civicnet_does_not_create_is_a_warning(airflow_home: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / "network.py"), safe_mode=False, known_pools={"default_pool", CITY_POOL})
    assert bag.dag_warnings  # so the test above can fail: the district pools must be known


# --- ids ------------------------------------------------------------------------------------

def test_one_ingest_dag_per_feed_config_and_nothing_else(dagbag: Any) -> None:
    assert sorted(dagbag.dag_ids) == sorted(ALL_IDS)


@pytest.mark.parametrize("slug", sorted(FEEDS), ids=str)
def test_ingest_dag_is_named_and_tagged_after_its_feed(dagbag: Any, slug: str) -> None:
    feed = FEEDS[slug]
    dag = dagbag.dags.get(f"ingest_{slug}")
    assert dag is not None, f"no DAG ingest_{slug} for connectors/feeds/{slug}.yaml"
    assert dag.fileloc == str(DAGS / "ingest.py")
    assert {"civicnet", "ingest", feed.department, feed.dataset} <= set(dag.tags)
    if feed.connector.kind == "push":  # runs when the gateway lands a batch, not on a clock
        assert dag.schedule.uri == f"civicnet://landing/{feed.dataset}"
    else:
        assert dag.schedule == feed.schedule


# --- policy ---------------------------------------------------------------------------------

@pytest.fixture(params=ALL_IDS, ids=str)
def dag(request: pytest.FixtureRequest, dagbag: Any) -> Any:
    found = dagbag.dags.get(request.param)
    assert found is not None, f"DAG {request.param} is missing"
    return found


def test_tagged_civicnet(dag: Any) -> None:
    assert "civicnet" in dag.tags


def test_retries_by_default(dag: Any) -> None:
    assert dag.default_args.get("retries", 0) >= 1
    assert {t.task_id: t.retries for t in dag.tasks if t.retries < 1} == {}


def test_documented_for_the_ui(dag: Any) -> None:
    assert dag.doc_md is not None and dag.doc_md.strip()


def test_one_active_run(dag: Any) -> None:
    assert dag.max_active_runs == 1


def test_no_catchup(dag: Any) -> None:
    assert dag.catchup is False


def test_start_date_is_timezone_aware(dag: Any) -> None:
    assert dag.start_date is not None and dag.start_date.utcoffset() is not None


# --- structure ------------------------------------------------------------------------------

@pytest.fixture(params=INGEST_IDS, ids=str)
def ingest_dag(request: pytest.FixtureRequest, dagbag: Any) -> Any:
    found = dagbag.dags.get(request.param)
    assert found is not None, f"DAG {request.param} is missing"
    return found


def test_ingest_pulls_checks_each_batch_then_merges_and_summarises(ingest_dag: Any) -> None:
    assert set(ingest_dag.task_ids) == {"pull", "check", "merge", "announce", "summarise"}
    assert upstream(ingest_dag, "pull") == set()
    assert upstream(ingest_dag, "check") == {"pull"}
    assert upstream(ingest_dag, "merge") == {"pull", "check"}
    assert upstream(ingest_dag, "announce") == {"merge"}
    assert upstream(ingest_dag, "summarise") == {"check"}
    check = ingest_dag.get_task("check")
    assert check.is_mapped
    assert mapped_over(check) == {"batch_id": "pull"}


def test_ingest_merge_is_the_single_writer_of_the_city_node(ingest_dag: Any) -> None:
    merge = ingest_dag.get_task("merge")
    assert merge.pool == CITY_POOL
    # it records refused batches (failed checks) too, but never runs after a failed pull
    assert merge.trigger_rule == "all_done_min_one_success"
    assert merge.outlets == []


def test_ingest_announces_the_city_asset_apart_from_the_merge(ingest_dag: Any) -> None:
    # a task of its own, so a run that changed nothing skips it and emits no asset event
    announce = ingest_dag.get_task("announce")
    assert [a.uri for a in announce.outlets] == [CITY_ASSET]
    assert announce.trigger_rule == "all_success"


def test_ingest_run_fails_when_a_check_fails(ingest_dag: Any) -> None:
    # summarise is the leaf that turns a refused batch into a failed run
    assert ingest_dag.get_task("summarise").trigger_rule == "all_success"
    assert {t.task_id for t in ingest_dag.leaves} == {"announce", "summarise"}


def test_network_sync_runs_on_the_city_node_asset(dagbag: Any) -> None:
    dag = dagbag.dags["network_sync"]
    assert isinstance(dag.schedule, list)
    assert [a.uri for a in dag.schedule] == [CITY_ASSET]


def test_network_sync_has_one_task_per_district_in_its_own_pool(dagbag: Any) -> None:
    dag = dagbag.dags["network_sync"]
    syncs = [f"sync_{code}" for code in districts()]
    assert len(syncs) == 9
    assert set(dag.task_ids) == {*syncs, "publish_city", "write_index", "reconcile", "quality_report",
                                 "deliver_rollups"}
    assert [(dag.get_task(t).pool, dag.get_task(t).pool_slots) for t in syncs] == [
        (district_pool(code), 1) for code in districts()]
    assert not any(dag.get_task(t).is_mapped for t in syncs)
    assert {p.name: p.slots for p in pool_specs()} == {CITY_POOL: 1, **{district_pool(c): 1 for c in districts()}}
    assert upstream(dag, "write_index") == {*syncs, "publish_city"}
    assert upstream(dag, "reconcile") == {"write_index"}
    assert upstream(dag, "quality_report") == {"reconcile"}
    assert upstream(dag, "deliver_rollups") == {"reconcile"}
    assert dag.get_task("quality_report").trigger_rule == "all_done"
    assert {t.task_id for t in dag.leaves} == {"quality_report", "deliver_rollups"}


# --- thin DAG files -------------------------------------------------------------------------

IMPORT_AND_LIST_MODULES = """
import importlib.util, json, sys
path = sys.argv[1]
spec = importlib.util.spec_from_file_location("dag_file_under_test", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_parsing_imports_nothing_heavy(tmp_path: Path, path: Path) -> None:
    pythonpath = os.pathsep.join(filter(None, [str(DAGS), os.environ.get("PYTHONPATH")]))
    env = os.environ | airflow_env(tmp_path) | {"PYTHONPATH": pythonpath}
    done = subprocess.run([sys.executable, "-c", IMPORT_AND_LIST_MODULES, str(path)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    heavy = sorted(m for m in modules if m not in LIGHT_API
                   and any(m == h or m.startswith(h + ".") for h in HEAVY_MODULES))
    assert heavy == []


def clock_calls(source: str) -> list[str]:
    """`x.now()`, `now()`, `utcnow()`, `today()` calls in a module, as 'line: name'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in CLOCK_CALLS:
                found.append(f"{node.lineno}: {name}()")
    return found


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_files_never_read_the_clock(path: Path) -> None:
    source = path.read_text("utf-8")
    assert clock_calls(source) == []
    assert re.findall(r"\b(?:utc)?now\(", source) == []


def test_clock_call_finder_sees_the_usual_spellings() -> None:
    source = "import datetime, pendulum\ndatetime.datetime.now()\npendulum.now('UTC')\ntoday()\n"
    assert clock_calls(source) == ["2: now()", "3: now()", "4: today()"]
