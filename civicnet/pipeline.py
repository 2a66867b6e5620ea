"""The pipeline steps DAG tasks and the CLI call: each composes connectors, quality and warehouse.

Every step reads and writes one feed, one batch or one subtree, takes the business date it
needs as a parameter, and is safe to run again.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from connectors.feeds import Feed, load_feeds
from connectors.parse import read_payload
from connectors.registry import connector_for
from quality.conform import SourceMapping, conform_batch
from quality.gate import run_gate
from schemas.contract import Contract, load_contracts
from schemas.divisions import Registry, load_registry
from warehouse import landing
from warehouse.merge import BatchInput, BatchOutcome, apply_batch, ledger_entry, refuse_batch
from warehouse.network import publish_origin, sync_subtree
from warehouse.node import attach, ensure_node, node_path
from warehouse.stats import NodeStats

VINTAGE = 2020


def registry() -> Registry:
    """The division registry the network is built on."""
    return load_registry(VINTAGE)


def contracts() -> list[Contract]:
    """Every shipped contract, in a stable order."""
    return list(load_contracts().values())


def feed(slug: str) -> Feed:
    """The feed config with this slug."""
    return load_feeds()[slug]


def city_code() -> str:
    """The root of the network."""
    return registry().root().code


def open_city(home: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection with the city node attached as `city` (created if new)."""
    con = duckdb.connect()
    code = city_code()
    path = node_path(home, code)
    if read_only and not path.exists():
        read_only = False
    attach(con, path, "city", read_only=read_only)
    if not read_only:
        ensure_node(con, "city", code, contracts())
    return con


def pending_batches(home: Path, slug: str) -> list[str]:
    """Landed batches of a feed the city ledger has not decided yet, oldest first."""
    f = feed(slug)
    con = open_city(home)
    try:
        return [m.batch_id for m in landing.landed_batches(home, f.dataset, slug)
                if ledger_entry(con, "city", m.batch_id) is None]
    finally:
        con.close()


def pull(home: Path, slug: str) -> list[str]:
    """Fetch what is new from a feed, land it, and return every batch still to be applied."""
    f = feed(slug)
    connector = connector_for(f, home)
    for payload in connector.fetch(landing.feed_state(home, f.dataset, slug)):
        table = read_payload(payload.data, payload.media_type, payload.encoding, payload.name)
        manifest = landing.Manifest(
            batch_id=payload.content_hash, feed=slug, department=f.department, dataset=f.dataset,
            source_name=payload.name, media_type=payload.media_type, encoding=payload.encoding,
            byte_size=len(payload.data), row_count=table.num_rows, received_at=landing.utc_now(),
            cursor=dict(payload.cursor))
        landing.land(home, manifest, payload.data, table)
    return pending_batches(home, slug)


def _staging(home: Path, batch_id: str) -> Path:
    return home / "staging" / batch_id


def check(home: Path, slug: str, batch_id: str, as_of: dt.date) -> dict[str, Any]:
    """Conform a landed batch, quarantine bad rows, run the gate; write the result to staging."""
    f = feed(slug)
    contract = load_contracts()[f.dataset]
    raw = landing.read_raw(home, f.dataset, batch_id)
    mapping = SourceMapping(slug, f.fields, f.values, f.dates, f.constants)
    conformed = conform_batch(raw, contract, mapping, {VINTAGE: registry()}, as_of)
    gate = run_gate(contract, conformed.accepted, conformed.received, conformed.quarantined.num_rows)
    out = _staging(home, batch_id)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(conformed.accepted.drop(["_line"]), out / "accepted.parquet")
    pq.write_table(conformed.quarantined, out / "quarantined.parquet")
    summary = {"batch_id": batch_id, "feed": slug, "dataset": f.dataset, "received": conformed.received,
               "accepted": conformed.accepted.num_rows, "quarantined": conformed.quarantined.num_rows,
               "duplicates": conformed.duplicates, "gate": gate.to_dict()}
    (out / "check.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), "utf-8")
    return {k: v for k, v in summary.items() if k != "gate"} | {"verdict": gate.verdict}


def merge(home: Path, slug: str, batch_ids: list[str]) -> list[dict[str, Any]]:
    """Apply checked batches to the city node in the order received; refused ones stay in landing."""
    f = feed(slug)
    contract = load_contracts()[f.dataset]
    con = open_city(home)
    try:
        return [_merge_one(con, home, f, contract, b).__dict__ for b in batch_ids]
    finally:
        con.close()


def _merge_one(con: duckdb.DuckDBPyConnection, home: Path, f: Feed, contract: Contract,
               batch_id: str) -> BatchOutcome:
    manifest = landing.read_manifest(home, f.dataset, batch_id)
    stage = _staging(home, batch_id)
    summary = json.loads((stage / "check.json").read_text("utf-8"))
    batch = BatchInput(batch_id, f.slug, f.department, manifest.source_name, manifest.received_at,
                       summary["received"], summary["duplicates"], summary["gate"])
    if summary["gate"]["verdict"] == "fail":
        return refuse_batch(con, "city", contract, batch, summary["quarantined"])
    return apply_batch(con, "city", contract, pq.read_table(stage / "accepted.parquet"),
                       pq.read_table(stage / "quarantined.parquet"), batch)


def districts() -> list[str]:
    """The codes of the districts: one sync task each."""
    return [d.code for d in registry().by_tier("district")]


def sync_district(home: Path, code: str, on_node: Any = None) -> list[dict[str, Any]]:
    """Sync one district's subtree from the city and publish its extracts; returns node stats."""
    report = sync_subtree(home, registry(), code, contracts(), on_node=on_node)
    return [s.__dict__ for s in report.nodes]


def publish_city(home: Path) -> dict[str, Any]:
    """Publish the city node's extract."""
    stats: NodeStats = publish_origin(home, city_code(), contracts())
    return stats.__dict__
