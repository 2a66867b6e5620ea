"""
### Network: sync the four tiers and publish one extract per node

Runs whenever an ingest DAG has changed the city node. One task per district (9, not 900
nodes), `sync_<district code>`, syncs its whole subtree — district, streets, communities — from
the city, each node in its own transaction with its high-water mark, and publishes each node as a
DuckDB file analysts can open. Each district's task runs in that district's pool
(`civicnet_district_<code>`, one slot): however many workers there are, a subtree has one writer
(a mapped task cannot take a pool per map index, hence a task per district). Then `write_index`
writes `extracts/network.json`, the index `civicnet status` reads, and `reconcile` checks every
node against its parent by control totals (rows, measure sums, a hash of the values per dataset
and division), writes `quality/reconciliation.json` and
fails, naming the nodes, if any differs (`civicnet verify --repair` re-copies those slices).
Last, whatever reconcile said, `quality_report` rebuilds the GX Data Docs
(`quality/gx/data_docs/index.html`) and writes this run's quality page
(`reports/quality/index.html`): batches, gate results, quarantine, freshness, reconciliation,
who has not submitted. Only after a reconciliation that passed, `deliver_rollups` sends each
subscribed periodic report's rollups of its latest period, checked at every hop, to the
subscribing departments' outboxes (finance: the expenditures), once per content.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task
from task_policy import DEFAULT_ARGS, civicnet_home, translate_errors

from civicnet.pipeline import district_codes, district_pool  # light: the shipped division registry


@dag(dag_id="network_sync", schedule=[Asset("civicnet://nodes/city")],
     start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"), catchup=False, max_active_runs=1,
     default_args=DEFAULT_ARGS, doc_md=__doc__, tags=["civicnet", "network"])
def network_sync() -> None:
    @task
    @translate_errors
    def sync_district(code: str) -> list[dict[str, object]]:
        from civicnet import pipeline

        return pipeline.sync_district(civicnet_home(), code)

    @task
    @translate_errors
    def publish_city() -> dict[str, object]:
        from civicnet import pipeline

        return pipeline.publish_city(civicnet_home())

    @task
    @translate_errors
    def write_index(subtrees: list[list[dict[str, object]]], city: dict[str, object]) -> str:
        from civicnet import pipeline

        return pipeline.write_network_index(civicnet_home(), list(subtrees), city)

    @task
    @translate_errors
    def reconcile() -> dict[str, object]:
        from civicnet import pipeline

        return pipeline.reconcile(civicnet_home())

    @task(trigger_rule="all_done")  # the page reports a failed reconciliation too
    @translate_errors
    def quality_report() -> dict[str, str]:
        from civicnet import pipeline

        return pipeline.publish_quality_report(civicnet_home())

    @task
    @translate_errors
    def deliver_rollups() -> list[dict[str, object]]:
        from civicnet import pipeline

        return pipeline.deliver_rollups(civicnet_home())

    city = publish_city()
    subtrees = [sync_district.override(task_id=f"sync_{code}", pool=district_pool(code))(code)
                for code in district_codes()]
    checked = write_index(subtrees, city) >> reconcile()
    checked >> quality_report()
    checked >> deliver_rollups()  # only after a reconciliation that passed


network_sync()
