"""The ingest steps the ingest DAGs' tasks and the CLI call: pull a feed and land what is new, check
each landed batch (conform, quarantine, quality gate), merge the checked batches into the city node.

Every step reads and writes one feed or one batch, takes the business date it needs as a
parameter, and is safe to run again.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from civicnet.context import VINTAGE, city_replica, feed, open_city, registry, source_mapping
from civicnet.pipeline.reports import write_owed
from connectors.feeds import Feed
from connectors.parse import payload_batches, read_payload
from connectors.parse_limits import UnreadablePayloadError
from connectors.payload import Payload
from connectors.registry import connector_for
from quality.conform import QUARANTINE_SCHEMA, conform_to_files
from quality.reasons import owned_elsewhere_format
from quality.stage import (
    QUARANTINED_FILE,
    StagedCheck,
    accepted_path,
    gate_record,
    quarantined_path,
    raise_for_gate,
    read_check,
    stage_dir,
    staged_check,
    unreadable_error,
    unreadable_sentence,
    write_check,
)
from quality.volume import record as record_volume
from quality.volume import volume_ratio
from schemas.contract import LINE_COLUMN, Contract, load_contracts
from schemas.errors import TerminalError
from schemas.homefiles import make_folder
from schemas.layout import landing_folder
from schemas.scratch import make_scratch, sweep_scratch
from schemas.sql import quote_literal
from warehouse import landing
from warehouse.merge import (
    BatchInput,
    BatchOutcome,
    Scope,
    apply_batch,
    ledger_entry,
    refuse_batch,
)
from warehouse.node import node_errors

log = logging.getLogger(__name__)
# DuckDB's buffer pool while a batch merges: what is bigger (the batch's changed rows) spills
MERGE_MEMORY_LIMIT = "512MB"
SPILL_PREFIX = ".merge-spill-"


class BatchNotCheckedError(TerminalError):
    """A batch reached the merge without a check result."""


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
        manifest = landing.Manifest(
            batch_id=payload.content_hash, feed=f.slug, department=f.department, dataset=f.dataset,
            source_name=payload.name, media_type=payload.media_type, encoding=payload.encoding,
            byte_size=payload.size, row_count=0, received_at=landing.utc_now(),
            cursor=dict(payload.cursor), unreadable=payload.unreadable)
        # streamed: copied to landing while hashed, then decoded from the landed copy batch by batch
        if landing.land_stream(home, manifest, payload.open, _decoder(payload)):  # False: landed before
            landed.append(manifest.batch_id)
        if payload.cursor:
            landing.save_feed_state(home, f.dataset, f.slug, payload.cursor)
    return landed


def _decoder(payload: Payload) -> landing.Decoder:
    """Decodes a landed payload into raw.parquet in bounded batches: (rows, None); for a payload that
    cannot be read (empty, cut off, not its format), an empty raw table and why (0, problem): it is
    landed like any other, and its check refuses it alone (the files after it land)."""
    def decode(landed: Path, raw: Path) -> tuple[int, str | None]:
        problem = payload.unreadable
        if problem is None:
            try:
                batches = payload_batches(landed, payload.media_type, payload.encoding, payload.name)
                return landing.write_raw(raw, batches), None
            except UnreadablePayloadError as err:
                problem = str(err) if payload.name in str(err) else f"{payload.name}: {err}"
        log.warning("%s is unreadable: landed as a batch its check refuses, with a report to its sender", payload.name)
        raw.unlink(missing_ok=True)  # the batches written before the fault was found
        landing.write_raw(raw, [pa.record_batch([pa.array([], pa.int64())], names=[LINE_COLUMN])])
        return 0, problem
    return decode


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


def check(home: Path, slug: str, batch_id: str, as_of: dt.date) -> dict[str, Any]:
    """Conform a landed batch, quarantine bad rows, run the gate; write the result to staging.

    A batch that cannot be conformed at all (columns missing, unreadable) or that fails the
    gate is recorded as `fail` and raised as a terminal error: it stays in landing. The check runs
    in a private folder published whole into staging (quality.stage.staged_check)."""
    stage = stage_dir(home, batch_id)
    with node_errors(stage), staged_check(stage) as work:  # node_errors: a full disk is said as such
        return _check_in(home, slug, batch_id, as_of, work)


def _check_in(home: Path, slug: str, batch_id: str, as_of: dt.date, work: Path) -> dict[str, Any]:
    """conform → stage the rows → gate → record, in the check's private folder `work`."""
    f = feed(slug)
    contract = load_contracts()[f.dataset]
    manifest = landing.read_manifest(home, f.dataset, batch_id)
    started = time.perf_counter()
    if manifest.unreadable is not None:
        write_check(work, StagedCheck.refused(batch_id, slug, f.dataset, manifest.row_count,
                                              unreadable_sentence(manifest.unreadable)))
        raise unreadable_error(batch_id, slug, manifest.source_name, manifest.unreadable,
                               manifest.sender or manifest.department)
    try:  # DuckDB writes the accepted (with _line: the merge may quarantine) and quarantined rows itself
        # DuckDB reads local files only: a batch in an object store is fetched into the check's folder
        with landing.local_raw(home, f.dataset, batch_id, work) as raw:
            conformed = conform_to_files(raw, contract, source_mapping(f), {VINTAGE: registry()}, as_of,
                                         accepted_path(work), work / QUARANTINED_FILE, scope=manifest.scope)
    except TerminalError as err:
        write_check(work, StagedCheck.refused(batch_id, slug, f.dataset, manifest.row_count, str(err)))
        raise
    from quality.gate import BatchSummary, run_gate  # great_expectations takes seconds to import

    summary = BatchSummary(conformed.received, conformed.quarantined, conformed.broken_keys,
                           volume_ratio(home, slug, conformed.received) if f.delivery == "full" else None)
    counts = (conformed.accepted, conformed.quarantined, conformed.duplicates)
    gate_started = time.perf_counter()
    gate = run_gate(contract, work, summary, as_of.isoformat(), full_delivery=f.delivery == "full")
    seconds = {"conform": round(gate_started - started, 3), "gate": round(time.perf_counter() - gate_started, 3)}
    record = StagedCheck(batch_id, slug, f.dataset, manifest.row_count, *counts,
                         gate_record(gate, summary.received, summary.quarantined), seconds)
    write_check(work, record)
    raise_for_gate(record, stage_dir(home, batch_id))
    return {k: v for k, v in record.to_dict().items() if k not in ("gate", "seconds")} | {
        "verdict": record.verdict, "seconds": seconds}


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
    spill: Path | None = None
    try:
        spill = _spill_folder(home)  # after the city's lock: no other merge of this home runs on this host
        # a batch bigger than DuckDB's memory limit spills here, not into the working directory
        con.execute(f"SET temp_directory = {quote_literal(str(spill))}")
        con.execute(f"SET memory_limit = {quote_literal(MERGE_MEMORY_LIMIT)}")
        for b in batch_ids:
            try:
                outcomes.append(_merge_one(con, home, f, contract, b).to_dict())
            except BatchNotCheckedError as err:
                unchecked.append(str(err))
        # every report the ledger says is owed, not only this run's: a run killed between a merge's
        # commit and its outbox write left its batch decided, so no later pull lists it again
        write_owed(con, home, slug)
    finally:
        con.close()
        if spill is not None:
            shutil.rmtree(spill, ignore_errors=True)
        pa.default_memory_pool().release_unused()
    if unchecked:
        raise BatchNotCheckedError("; ".join(unchecked))
    return outcomes


def _spill_folder(home: Path) -> Path:
    """A fresh folder for DuckDB's spill during a merge, after removing those of merges that were killed
    (their `finally` never ran): a dot folder in landing, which no reader of landing takes for a batch."""
    folder = make_folder(landing_folder(home))
    swept = sweep_scratch(folder, SPILL_PREFIX)
    if swept.removed:
        log.info("removed %d spill folders of merges no longer running", len(swept.removed))
    for kept in swept.unjudged:
        log.warning("kept spill folder %s: its merge ran on another host or in another container (or it "
                    "cannot be removed); remove it once no merge runs there", kept)
    return make_scratch(folder, SPILL_PREFIX)


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
    stage = stage_dir(home, batch_id)
    checked = read_check(stage)
    if checked is None:
        raise BatchNotCheckedError(f"batch {batch_id} of feed {f.slug!r} has no check result in {stage}; "
                                   "its check task did not finish: clear and rerun it")
    batch = BatchInput(batch_id, f.slug, manifest.department, manifest.source_name, manifest.received_at,
                       checked.received, checked.duplicates, checked.gate,
                       None if manifest.scope is None else scope_of(contract, manifest.scope))
    quarantined = quarantined_path(stage)  # the merge reads the staged rows where they are (read_parquet)
    replica = city_replica(home)
    if checked.verdict == "fail":
        if quarantined is None:  # refused before any row was checked (columns missing, unreadable): all held
            return refuse_batch(con, "city", contract, batch, QUARANTINE_SCHEMA.empty_table(), held=checked.received,
                                replica=replica)
        return refuse_batch(con, "city", contract, batch, quarantined, held=checked.accepted, replica=replica)
    if quarantined is None:
        raise BatchNotCheckedError(f"batch {batch_id} of feed {f.slug!r} passed its check but {stage} has no "
                                   "quarantined rows file (the folder was altered): clear and rerun its check task")
    outcome = apply_batch(con, "city", contract, accepted_path(stage), quarantined, batch, replica=replica)
    record_volume(home, f.slug, batch_id, outcome.received)
    return outcome


def scope_of(contract: Contract, division: str) -> Scope:
    """What the merge needs to confine a batch to `division`: the words of `key_owned_elsewhere` and
    the divisions' names (a community's with its street's: 园岭街道红荔社区居委会)."""
    key = contract.field(contract.primary_key[0])
    reg = registry()
    names = {d.code: (reg.divisions[d.parent_code].name if d.tier == "community" else "") + d.name
             for d in reg.divisions.values()}
    return Scope(division, owned_elsewhere_format(key.title, key.name), key.name, names)


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
