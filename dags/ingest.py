"""
### Ingest: one DAG per department feed

Generated from the feed configs in `connectors/feeds/`. Each run pulls what is new from the
feed and lands it (immutable, content-addressed: the same file twice is a no-op), conforms
every landed batch to its dataset contract with row checks (bad rows go to quarantine with
reason codes), runs the Great Expectations gate, and merges the batches that pass into the
city node with history. A refused batch stays in landing and its check task fails visibly; a
file that cannot be read is landed and refused alone, and the rest of the drop goes on. A pull
that fails stops the run there: nothing is checked or merged. When the merge changed the city,
`announce` updates the `civicnet://nodes/city` asset, which triggers the network DAG; a run that
changed nothing skips it, so the ~900 nodes are not synced for nothing.

A push feed (batches sent to the gateway) has no schedule of its own: its DAG runs on the
`civicnet://landing/<dataset>` asset, whose event the gateway posts through Airflow's REST API
when a batch lands (`civicnet gateway serve --trigger airflow`), and its pull step only collects
the pushed batches not yet decided (every batch that waited, not only the announced one).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, TriggerRule, dag, task
from task_policy import DEFAULT_ARGS, business_date, civicnet_home, skip_when_empty, translate_errors

from civicnet.pipeline import load_feeds  # light: the package resolves names on first use

CITY_NODE = Asset("civicnet://nodes/city")


def landing_asset(dataset: str) -> Asset:
    """The asset a push gateway updates when it lands a batch of `dataset`."""
    return Asset(f"civicnet://landing/{dataset}")


def build(slug: str, department: str, dataset: str, schedule: str | Asset | None) -> None:
    """Declare the ingest DAG of one feed."""

    @dag(dag_id=f"ingest_{slug}", schedule=schedule, start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
         catchup=False, max_active_runs=1, default_args=DEFAULT_ARGS, doc_md=__doc__,
         tags=["civicnet", "ingest", department, dataset])
    def ingest() -> None:
        @task
        @translate_errors
        def pull() -> list[str]:
            from civicnet import pipeline

            return pipeline.pull(civicnet_home(), slug)

        @task(max_active_tis_per_dag=2)
        @translate_errors
        def check(batch_id: str) -> dict[str, object]:
            from civicnet import pipeline

            return pipeline.check(civicnet_home(), slug, batch_id, business_date())

        # refused batches (failed checks) are merged too, to record them; a failed pull is not
        @task(trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS, pool="civicnet_city_node")
        @translate_errors
        def merge(batch_ids: list[str]) -> list[dict[str, object]]:
            from civicnet import pipeline

            return pipeline.merge(civicnet_home(), slug, list(batch_ids))

        @task(outlets=[CITY_NODE])
        @skip_when_empty
        def announce(outcomes: list[dict[str, object]]) -> dict[str, int]:
            """Emit the city asset event only if the merge changed the city."""
            from civicnet import pipeline

            return pipeline.city_changes(list(outcomes))

        @task
        def summarise(checks: list[dict[str, object]]) -> dict[str, object]:
            """Leaf that succeeds only if every batch passed its checks, so a refused batch fails the run."""
            from civicnet import pipeline

            return pipeline.summarise_checks(list(checks))

        batch_ids = pull()
        checks = check.expand(batch_id=batch_ids)
        merged = merge(batch_ids)
        checks >> merged
        announce(merged)
        summarise(checks)

    ingest()


for _feed in load_feeds().values():
    pushed = _feed.connector.kind == "push"
    build(_feed.slug, _feed.department, _feed.dataset, landing_asset(_feed.dataset) if pushed else _feed.schedule)
