"""The ingest steps the ingest DAGs' tasks and the CLI call: pull a feed and land what is new, check
each landed batch (conform, quarantine, quality gate), merge the checked batches into the city node.

Every step reads and writes one feed or one batch, takes the business date it needs as a
parameter, and is safe to run again.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from civicnet.context import VINTAGE, feed, open_city, registry, source_mapping
from civicnet.pipeline.reports import write_owed
from connectors.feeds import Feed
from connectors.parse import LINE_COLUMN, UnreadablePayloadError, read_payload
from connectors.payload import Payload
from connectors.registry import connector_for
from quality.conform import QUARANTINE_SCHEMA, conform_batch
from quality.reasons import owned_elsewhere_format
from quality.rejection import gate_sentence
from quality.volume import record as record_volume
from quality.volume import volume_ratio
from schemas.contract import Contract, load_contracts
from schemas.errors import TerminalError
from schemas.homefiles import make_folder, open_private, secure, write_atomic
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


class BatchNotCheckedError(TerminalError):
    """A batch reached the merge without a check result."""


class QualityGateFailedError(TerminalError):
    """A batch failed an error-severity expectation: it is refused whole."""


class UnreadableBatchError(TerminalError):
    """A landed file could not be read at all (empty, cut off, not its format): it is refused alone."""


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


def _staging(home: Path, batch_id: str) -> Path:
    return home / "staging" / batch_id


def _write_check(out: Path, summary: dict[str, Any]) -> None:
    write_atomic(out / "check.json", json.dumps(summary, ensure_ascii=False, indent=2))


@contextmanager
def _staged_check(out: Path) -> Iterator[Path]:
    """A private folder for one check of a batch, published into the batch's staging folder `out`
    once it holds a check result. Two checks of one batch (two ingests of a feed at once) take
    turns on a lock; a reader of `out` (the merge, the gateway) sees the last complete check."""
    with node_errors(out):  # a full disk is said as such
        make_folder(out)
        with open_private(out / ".lock", append=True) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also on a kill
            work = Path(tempfile.mkdtemp(prefix=".check-", dir=out))
            try:
                yield work
            finally:
                if (work / "check.json").exists():
                    _publish_stage(work, out)
                shutil.rmtree(work, ignore_errors=True)


def _publish_stage(work: Path, out: Path) -> None:
    """Move one check's files into the staging folder by renames, check.json last: from the first
    rename until the last the folder has no check.json, so nobody takes it as complete."""
    (out / "check.json").unlink(missing_ok=True)
    produced = {f.name for f in work.iterdir()}
    for old in out.iterdir():  # files of an earlier check this one did not write (a stale accepted.parquet)
        if old.is_file() and not old.name.startswith(".") and old.name not in produced:
            old.unlink()
    for f in sorted(work.iterdir()):
        if f.name != "check.json":
            secure(f)  # pyarrow and GX created it under the umask
            os.replace(f, out / f.name)
    os.replace(work / "check.json", out / "check.json")


def check(home: Path, slug: str, batch_id: str, as_of: dt.date) -> dict[str, Any]:
    """Conform a landed batch, quarantine bad rows, run the gate; write the result to staging.

    A batch that cannot be conformed at all (columns missing, unreadable) or that fails the
    gate is recorded as `fail` and raised as a terminal error: it stays in landing. The check runs
    in a private folder published whole into staging (see _staged_check)."""
    with _staged_check(_staging(home, batch_id)) as work:
        return _check_in(home, slug, batch_id, as_of, work)


def _check_in(home: Path, slug: str, batch_id: str, as_of: dt.date, work: Path) -> dict[str, Any]:
    f = feed(slug)
    contract = load_contracts()[f.dataset]
    stage = _staging(home, batch_id)  # where the result will be, for messages
    raw = landing.raw_path(home, f.dataset, batch_id)
    mapping = source_mapping(f)
    manifest = landing.read_manifest(home, f.dataset, batch_id)
    base = {"batch_id": batch_id, "feed": slug, "dataset": f.dataset, "received": manifest.row_count}
    started = time.perf_counter()
    if manifest.unreadable is not None:
        _refuse_unchecked(work, base, unreadable_sentence(manifest.unreadable))
        raise UnreadableBatchError(
            f"batch {batch_id} of feed {slug!r} ({manifest.source_name}) is unreadable and refused: "
            f"{manifest.unreadable}. The rest of the drop is not held back; a rejection report goes to "
            f"{manifest.sender or manifest.department}'s outbox; a corrected file dropped again is taken.")
    try:
        conformed = conform_batch(raw, contract, mapping, {VINTAGE: registry()}, as_of, scope=manifest.scope)
    except TerminalError as err:
        _refuse_unchecked(work, base, str(err))
        raise
    from quality.gate import BatchSummary, run_gate  # great_expectations takes seconds to import

    pq.write_table(conformed.accepted, work / "accepted.parquet")  # with _line: the merge may still quarantine
    pq.write_table(conformed.quarantined, work / "quarantined.parquet")
    for written in ("accepted.parquet", "quarantined.parquet"):  # pyarrow creates files under the umask
        secure(work / written)
    summary = BatchSummary(conformed.received, conformed.quarantined.num_rows, conformed.broken_keys,
                           volume_ratio(home, slug, conformed.received) if f.delivery == "full" else None)
    counts = {"accepted": conformed.accepted.num_rows, "quarantined": conformed.quarantined.num_rows,
              "duplicates": conformed.duplicates}
    del conformed
    pa.default_memory_pool().release_unused()  # give a big batch's buffers back before the gate
    gate_started = time.perf_counter()
    gate = run_gate(contract, work, summary, as_of.isoformat(), full_delivery=f.delivery == "full")
    seconds = {"conform": round(gate_started - started, 3), "gate": round(time.perf_counter() - gate_started, 3)}
    sentence_counts = {"received": summary.received, "quarantined": summary.quarantined}
    refusal = [gate_sentence(r, sentence_counts) for r in gate.failed("error")]
    gate_dict = gate.to_dict() | ({"error": "; ".join(refusal)} if refusal else {}) | \
        {"warnings": [gate_sentence(r, sentence_counts) for r in gate.failed("warn")]}
    _write_check(work, base | counts | {"gate": gate_dict, "seconds": seconds})
    if gate.verdict == "fail":
        raise QualityGateFailedError(
            f"batch {batch_id} of feed {slug!r} failed the quality gate: {'; '.join(refusal)}. "
            f"It stays in landing and is not applied; see {stage / 'check.json'} and the rejection report, "
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
        # every report the ledger says is owed, not only this run's: a run killed between a merge's
        # commit and its outbox write left its batch decided, so no later pull lists it again
        write_owed(con, home, slug)
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
                       summary["received"], summary["duplicates"], summary["gate"],
                       None if manifest.scope is None else scope_of(contract, manifest.scope))
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
