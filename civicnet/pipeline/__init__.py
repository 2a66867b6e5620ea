"""The one API the DAG tasks and the CLI call: each step composes connectors, quality and warehouse.

    ingest   pull → check → merge for one feed (civicnet.pipeline.ingest)
    network  sync each district's subtree, publish the city, write the index (civicnet.pipeline.network)
    verify   every node against its parent by control totals, and repair (civicnet.pipeline.verify)
    reports  rejection reports owed, GX Data Docs and the quality page (civicnet.pipeline.reports)
    status   what `civicnet status` and the quality page show (civicnet.pipeline.status)
    push     the push client's local check and upload (civicnet.pipeline.push)
    batches  what became of a pushed batch, and its report, for the gateway (civicnet.pipeline.batches)
    runner   the DAGs run through Airflow on a home (civicnet.pipeline.runner)
    storage  server mode's object stores: landing and the releases mirror (civicnet.pipeline.storage)

Names are resolved on first use (PEP 562): a DAG file imports this package at parse time, every
few seconds, and must not pay for DuckDB, Arrow or Great Expectations until a task runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name → the submodule (of this package, or below it) that owns it
_API = {
    "pull": "ingest", "check": "ingest", "merge": "ingest", "city_changes": "ingest",
    "summarise_checks": "ingest", "ingest_feed": "ingest", "land_feed": "ingest", "decode_payload": "ingest",
    "pending_batches": "ingest",
    "sync_district": "network", "sync_districts": "network", "sync_network": "network", "publish_city": "network",
    "write_network_index": "network", "read_network_index": "network", "rebuild_node": "network",
    "reconcile": "verify", "verify_and_record": "verify",
    "write_owed_reports": "reports", "publish_quality_report": "reports", "deliver_rollups": "deliveries",
    "use_object_stores": "storage", "mirror_releases": "storage",
    "districts": "civicnet.context", "load_feeds": "connectors.feeds",
    # light, read while Airflow parses dags/network.py: one sync task and one pool per district
    "district_codes": "pools", "district_pool": "pools",
    # what the DAGs' task policy needs (dags/ imports nothing of ours but this package)
    "TerminalError": "schemas.errors", "Connection": "connectors.secrets", "register_lookup": "connectors.secrets",
    "OWNER_ONLY": "schemas.homefiles", "shared": "schemas.homefiles", "use_modes": "schemas.homefiles",
}
__all__ = [
    "OWNER_ONLY",
    "Connection",
    "TerminalError",
    "check",
    "city_changes",
    "decode_payload",
    "deliver_rollups",
    "district_codes",
    "district_pool",
    "districts",
    "ingest_feed",
    "land_feed",
    "load_feeds",
    "merge",
    "mirror_releases",
    "pending_batches",
    "publish_city",
    "publish_quality_report",
    "pull",
    "read_network_index",
    "rebuild_node",
    "reconcile",
    "register_lookup",
    "shared",
    "summarise_checks",
    "sync_district",
    "sync_districts",
    "sync_network",
    "use_modes",
    "use_object_stores",
    "verify_and_record",
    "write_network_index",
    "write_owed_reports",
]

if TYPE_CHECKING:
    from civicnet.context import districts
    from civicnet.pipeline.deliveries import deliver_rollups
    from civicnet.pipeline.ingest import (
        check,
        city_changes,
        decode_payload,
        ingest_feed,
        land_feed,
        merge,
        pending_batches,
        pull,
        summarise_checks,
    )
    from civicnet.pipeline.network import (
        publish_city,
        read_network_index,
        rebuild_node,
        sync_district,
        sync_districts,
        sync_network,
        write_network_index,
    )
    from civicnet.pipeline.pools import district_codes, district_pool
    from civicnet.pipeline.reports import publish_quality_report, write_owed_reports
    from civicnet.pipeline.storage import mirror_releases, use_object_stores
    from civicnet.pipeline.verify import reconcile, verify_and_record
    from connectors.feeds import load_feeds
    from connectors.secrets import Connection, register_lookup
    from schemas.errors import TerminalError
    from schemas.homefiles import OWNER_ONLY, shared, use_modes


def __getattr__(name: str) -> Any:
    owner = _API.get(name)
    if owner is None:
        raise AttributeError(f"civicnet.pipeline has no {name!r}; its API: {', '.join(__all__)}")
    module = importlib.import_module(owner if "." in owner else f"{__name__}.{owner}")
    value = getattr(module, name)
    globals()[name] = value  # resolved once
    return value
