"""The pipeline steps DAG tasks and the CLI call: each composes connectors, quality and warehouse.

Every step reads and writes one feed, one batch or one subtree, takes the business date it
needs as a parameter, and is safe to run again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from functools import cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from connectors.feeds import Feed, FeedConfigError, load_feeds
from connectors.parse import LINE_COLUMN, UnreadablePayloadError, read_payload
from connectors.payload import Payload
from connectors.registry import connector_for
from quality.conform import QUARANTINE_SCHEMA, SourceMapping, conform_batch
from quality.rejection import build_report, gate_sentence, write_outbox
from quality.volume import record as record_volume
from quality.volume import volume_ratio
from schemas.contract import Contract, load_contracts
from schemas.divisions import Registry, in_subtree, load_registry
from schemas.errors import TerminalError
from warehouse import landing
from warehouse.merge import BatchInput, BatchOutcome, apply_batch, ledger_entry, refuse_batch
from warehouse.network import publish_origin, sync_subtree
from warehouse.node import attach, connect, ensure_node, node_path
from warehouse.stats import NodeStats

VINTAGE = 2020
log = logging.getLogger(__name__)


class BatchNotCheckedError(TerminalError):
    """A batch reached the merge without a check result."""


class QualityGateFailedError(TerminalError):
    """A batch failed an error-severity expectation: it is refused whole."""


class UnreadableBatchError(TerminalError):
    """A landed file could not be read at all (empty, cut off, not its format): it is refused alone."""


@cache
def registry() -> Registry:
    """The division registry the network is built on (immutable: read once per process)."""
    return load_registry(VINTAGE)


def contracts() -> list[Contract]:
    """Every shipped contract, in a stable order."""
    return list(load_contracts().values())


def feed(slug: str) -> Feed:
    """The feed config with this slug."""
    feeds = load_feeds()
    if slug not in feeds:
        raise FeedConfigError(f"no feed {slug!r} in connectors/feeds/; known feeds: {sorted(feeds)}")
    return feeds[slug]


def city_code() -> str:
    """The root of the network."""
    return registry().root().code


def open_city(home: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection with the city node attached as `city` (created if new)."""
    con = connect()
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
    land_feed(home, feed(slug))
    return pending_batches(home, slug)


def land_feed(home: Path, f: Feed) -> list[str]:
    """Fetch what is new from one feed's source and land it; returns the batch ids landed now.

    Each payload is landed before the cursor that covers it is saved: a crash in between means
    the next pull fetches it again, and the same content lands as the same batch (a no-op)."""
    connector = connector_for(f, home)
    landed = []
    for payload in connector.fetch(landing.feed_state(home, f.dataset, f.slug)):
        table, unreadable = decode_payload(payload)
        manifest = landing.Manifest(
            batch_id=payload.content_hash, feed=f.slug, department=f.department, dataset=f.dataset,
            source_name=payload.name, media_type=payload.media_type, encoding=payload.encoding,
            byte_size=len(payload.data), row_count=table.num_rows, received_at=landing.utc_now(),
            cursor=dict(payload.cursor), unreadable=unreadable)
        if landing.land(home, manifest, payload.data, table):  # False: this content was landed before
            landed.append(manifest.batch_id)
        if payload.cursor:
            landing.save_feed_state(home, f.dataset, f.slug, payload.cursor)
    return landed


def decode_payload(payload: Payload) -> tuple[pa.Table, str | None]:
    """A payload's rows; for a payload that cannot be read (empty, cut off, not its format), no rows
    and why: it is landed like any other, and its check refuses it alone (the files after it land)."""
    problem = payload.unreadable
    if problem is None:
        try:
            return read_payload(payload.data, payload.media_type, payload.encoding, payload.name), None
        except UnreadablePayloadError as err:
            problem = str(err) if payload.name in str(err) else f"{payload.name}: {err}"
    log.warning("%s is unreadable: landed as a batch its check refuses, with a report to its sender", payload.name)
    return pa.table({LINE_COLUMN: pa.array([], pa.int64())}), problem


def source_mapping(f: Feed) -> SourceMapping:
    """How a feed's columns become its contract's fields."""
    return SourceMapping(f.slug, f.fields, f.values, f.dates, f.constants, tuple(f.ignore), f.deleted)


def _staging(home: Path, batch_id: str) -> Path:
    return home / "staging" / batch_id


def _write_check(out: Path, summary: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "check.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), "utf-8")


def check(home: Path, slug: str, batch_id: str, as_of: dt.date) -> dict[str, Any]:
    """Conform a landed batch, quarantine bad rows, run the gate; write the result to staging.

    A batch that cannot be conformed at all (columns missing, unreadable) or that fails the
    gate is recorded as `fail` and raised as a terminal error: it stays in landing."""
    f = feed(slug)
    contract = load_contracts()[f.dataset]
    out = _staging(home, batch_id)
    raw = landing.raw_path(home, f.dataset, batch_id)
    mapping = source_mapping(f)
    manifest = landing.read_manifest(home, f.dataset, batch_id)
    base = {"batch_id": batch_id, "feed": slug, "dataset": f.dataset, "received": manifest.row_count}
    started = time.perf_counter()
    if manifest.unreadable is not None:
        _refuse_unchecked(out, base, unreadable_sentence(manifest.unreadable))
        raise UnreadableBatchError(
            f"batch {batch_id} of feed {slug!r} ({manifest.source_name}) is unreadable and refused: "
            f"{manifest.unreadable}. The rest of the drop is not held back; a rejection report goes to "
            f"{manifest.sender or manifest.department}'s outbox; a corrected file dropped again is taken.")
    try:
        conformed = conform_batch(raw, contract, mapping, {VINTAGE: registry()}, as_of, scope=manifest.scope)
    except TerminalError as err:
        _refuse_unchecked(out, base, str(err))
        raise
    from quality.gate import BatchSummary, run_gate  # great_expectations takes seconds to import

    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(conformed.accepted.drop(["_line"]), out / "accepted.parquet")
    pq.write_table(conformed.quarantined, out / "quarantined.parquet")
    summary = BatchSummary(conformed.received, conformed.quarantined.num_rows, conformed.broken_keys,
                           volume_ratio(home, slug, conformed.received) if f.delivery == "full" else None)
    counts = {"accepted": conformed.accepted.num_rows, "quarantined": conformed.quarantined.num_rows,
              "duplicates": conformed.duplicates}
    del conformed
    pa.default_memory_pool().release_unused()  # give a big batch's buffers back before the gate
    gate_started = time.perf_counter()
    gate = run_gate(contract, out, summary, as_of.isoformat(), full_delivery=f.delivery == "full")
    seconds = {"conform": round(gate_started - started, 3), "gate": round(time.perf_counter() - gate_started, 3)}
    sentence_counts = {"received": summary.received, "quarantined": summary.quarantined}
    refusal = [gate_sentence(r, sentence_counts) for r in gate.failed("error")]
    gate_dict = gate.to_dict() | ({"error": "; ".join(refusal)} if refusal else {}) | \
        {"warnings": [gate_sentence(r, sentence_counts) for r in gate.failed("warn")]}
    _write_check(out, base | counts | {"gate": gate_dict, "seconds": seconds})
    if gate.verdict == "fail":
        raise QualityGateFailedError(
            f"batch {batch_id} of feed {slug!r} failed the quality gate: {'; '.join(refusal)}. "
            f"It stays in landing and is not applied; see {out / 'check.json'} and the rejection report, "
            "then ask the department to resend a corrected file.")
    return base | counts | {"verdict": gate.verdict, "seconds": seconds}


def unreadable_sentence(problem: str) -> str:
    """What a rejection report says of a file that could not be read."""
    return (f"the file is unreadable, so none of its rows could be checked: {problem}. Send it again "
            "complete, in the agreed format and encoding")


def _refuse_unchecked(out: Path, base: dict[str, Any], error: str) -> None:
    """Record a batch refused before any row was checked: every row it has is held."""
    _write_check(out, base | {"accepted": 0, "quarantined": 0, "duplicates": 0,
                              "gate": {"verdict": "fail", "error": error, "results": []}})


def summarise_checks(checks: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over the check results of one run (all of them passed to get here)."""
    keys = ("received", "accepted", "quarantined", "duplicates")
    return {"batches": len(checks)} | {k: sum(int(c[k]) for c in checks) for k in keys}


def merge(home: Path, slug: str, batch_ids: list[str]) -> list[dict[str, Any]]:
    """Apply checked batches to the city node in the order received; refused ones stay in landing.

    A batch whose check never finished is left pending (and reported by raising at the end), so
    the batches after it are still applied."""
    f = feed(slug)
    contract = load_contracts()[f.dataset]
    con = open_city(home)
    outcomes, unchecked = [], []
    try:
        for b in batch_ids:
            try:
                outcomes.append(_merge_one(con, home, f, contract, b).__dict__)
            except BatchNotCheckedError as err:
                unchecked.append(str(err))
                continue
            # after the merge, also for a batch decided before: a run killed between the merge's
            # commit and this write writes the report when it runs again (same content: no-op)
            manifest = landing.read_manifest(home, f.dataset, b)
            write_outbox(home, build_report(con, "city", b, manifest, source_mapping(f)))
    finally:
        con.close()
        pa.default_memory_pool().release_unused()
    if unchecked:
        raise BatchNotCheckedError("; ".join(unchecked))
    return outcomes


def city_changes(outcomes: list[dict[str, Any]]) -> dict[str, int]:
    """What the merged batches changed in the city node: rows applied (deletes included), moved and
    released from quarantine; empty when nothing changed (refused batches and unchanged rows change
    nothing), so the network need not be woken. A batch decided by an earlier try of the same run
    counts again: that try may have died before announcing its change."""
    keys = ("applied", "moved", "released")
    changing = [o for o in outcomes if o.get("status") == "applied" and any(int(o.get(k) or 0) for k in keys)]
    if not changing:
        return {}
    return {"batches": len(changing)} | {k: sum(int(o.get(k) or 0) for o in changing) for k in keys}


def _merge_one(con: duckdb.DuckDBPyConnection, home: Path, f: Feed, contract: Contract,
               batch_id: str) -> BatchOutcome:
    manifest = landing.read_manifest(home, f.dataset, batch_id)
    stage = _staging(home, batch_id)
    if not (stage / "check.json").exists():
        raise BatchNotCheckedError(f"batch {batch_id} of feed {f.slug!r} has no check result in {stage}; "
                                   "its check task did not finish: clear and rerun it")
    summary = json.loads((stage / "check.json").read_text("utf-8"))
    batch = BatchInput(batch_id, f.slug, manifest.department, manifest.source_name, manifest.received_at,
                       summary["received"], summary["duplicates"], summary["gate"], manifest.scope)
    if summary["gate"]["verdict"] == "fail":
        if (stage / "quarantined.parquet").exists():
            return refuse_batch(con, "city", contract, batch, pq.read_table(stage / "quarantined.parquet"),
                                held=summary["accepted"])
        # refused before any row was checked (columns missing, unreadable): every row is held
        return refuse_batch(con, "city", contract, batch, QUARANTINE_SCHEMA.empty_table(), held=summary["received"])
    outcome = apply_batch(con, "city", contract, pq.read_table(stage / "accepted.parquet"),
                          pq.read_table(stage / "quarantined.parquet"), batch)
    record_volume(home, f.slug, batch_id, outcome.received)
    return outcome


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


def write_network_index(home: Path, subtrees: list[list[dict[str, Any]]], city: dict[str, Any]) -> str:
    """Write extracts/network.json: every node, its extract and its rows; returns the path."""
    from warehouse.extract import extract_path

    nodes = [city] + [n for subtree in subtrees for n in subtree]
    index = {"vintage": VINTAGE, "nodes": [
        {"tier": n["tier"], "code": n["code"], "extract": str(extract_path(home, n["code"])),
         "rows": n["rows"], "checksums": n["checksums"]}
        for n in sorted(nodes, key=lambda n: n["code"])]}
    path = home / "extracts" / "network.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(index, ensure_ascii=False, indent=1), "utf-8")
    tmp.replace(path)
    return str(path)


def ingest_feed(home: Path, slug: str, as_of: dt.date) -> list[dict[str, Any]]:
    """pull → check → merge for one feed in this process (what the ingest DAG's tasks do, in order).

    Used by the benchmark and tests; refused batches are recorded and left in landing."""
    batch_ids = pull(home, slug)
    for batch_id in batch_ids:
        try:
            check(home, slug, batch_id, as_of)
        except TerminalError:  # recorded as `fail` in its check result: the merge refuses it
            continue
    return merge(home, slug, batch_ids)


def sync_network(home: Path, on_node: Any = None, workers: int = 1, reconcile: bool = True) -> str:
    """Sync every district's subtree, publish the city, write the index, then (unless `reconcile`
    is false: the benchmark times it apart) reconcile every node with its parent by control totals
    (the network DAG).

    With `workers` > 1 districts sync in that many processes, as the DAG's mapped tasks do
    (`on_node` must then be a picklable module-level function)."""
    reg = registry()
    # Largest subtrees first, so no big district is left to run alone at the end.
    codes = sorted(districts(), key=lambda c: -sum(1 for d in reg.divisions if in_subtree(d, c)))
    if workers <= 1:
        subtrees = [sync_district(home, code, on_node=on_node) for code in codes]
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            subtrees = list(pool.map(sync_district, [home] * len(codes), codes, [on_node] * len(codes)))
    index = write_network_index(home, subtrees, publish_city(home))
    if reconcile:
        from civicnet.verify import verify_and_record  # civicnet.verify imports this module

        verify_and_record(home, workers=workers)  # check only: the result is in quality/reconciliation.json
    return index


def publish_quality_report(home: Path, run_id: str | None = None) -> dict[str, str]:
    """Rebuild GX Data Docs and write this run's quality page; returns both paths.

    Every Data Docs rebuild re-reads every batch's results: seconds, so this runs once per network
    run, not per batch."""
    from zoneinfo import ZoneInfo

    from civicnet.status import quality_page
    from quality.docs import build_data_docs

    today = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    docs = build_data_docs(home, contracts(), today)
    return {"data_docs": str(docs), "quality_page": str(quality_page(home, run_id))}
