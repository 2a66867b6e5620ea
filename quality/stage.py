"""The checked batch on disk: the hand-off between a batch's check and its merge.

`<home>/staging/<batch_id>/` holds the last complete check of one batch:

    accepted.parquet     the rows that passed the row checks (with `_line`: the merge may still quarantine)
    quarantined.parquet  the rows held back, with their reasons (absent when no row could be checked)
    gx_results.json      Great Expectations' results, for Data Docs (quality.gate writes it)
    check.json           the check record (`StagedCheck`), written last

A check runs in a private folder beside them (`.check-*`), one at a time under the batch's lock
(`.lock`), and is published by renames with check.json last: a reader (the merge, the gateway, the
Data Docs) sees the last complete check, or none. This module is the one that knows these names.
A batch that fails the gate, or cannot be read or conformed at all, is recorded here as `fail`
and raised as a terminal error: it stays in landing.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from quality.rejection import gate_sentence
from quality.rows import read_quarantined
from quality.verdict import GateResult
from schemas import layout
from schemas.errors import TerminalError
from schemas.homefiles import make_folder, open_private, secure, write_atomic

CHECK_FILE = "check.json"
ACCEPTED_FILE = "accepted.parquet"
QUARANTINED_FILE = "quarantined.parquet"
RESULTS_FILE = "gx_results.json"
LOCK_FILE = ".lock"


class QualityGateFailedError(TerminalError):
    """A batch failed an error-severity expectation: it is refused whole."""


class UnreadableBatchError(TerminalError):
    """A landed file could not be read at all (empty, cut off, not its format): it is refused alone."""


@dataclass(frozen=True)
class StagedCheck:
    """What check.json records of one check: the counts (received = accepted + quarantined +
    duplicates for a checked batch) and the gate's verdict with its results, refusal (`error`) and
    `warnings` sentences; `seconds` spent in conform and gate (None for a batch refused unchecked)."""

    batch_id: str
    feed: str
    dataset: str
    received: int
    accepted: int
    quarantined: int
    duplicates: int
    gate: dict[str, Any]
    seconds: dict[str, float] | None = None

    @classmethod
    def refused(cls, batch_id: str, feed: str, dataset: str, received: int, error: str) -> StagedCheck:
        """The record of a batch refused before any row was checked: every row it has is held."""
        return cls(batch_id, feed, dataset, received, 0, 0, 0, {"verdict": "fail", "error": error, "results": []})

    @property
    def verdict(self) -> str:
        """`pass`, `warn` or `fail`."""
        return str(self.gate["verdict"])

    @property
    def error(self) -> str | None:
        """Why the batch was refused, in sentences for its sender (None when it was not)."""
        error = self.gate.get("error")
        return None if error is None else str(error)

    def to_dict(self) -> dict[str, Any]:
        """check.json's content (no `seconds` key for a batch refused unchecked)."""
        out = {"batch_id": self.batch_id, "feed": self.feed, "dataset": self.dataset, "received": self.received,
               "accepted": self.accepted, "quarantined": self.quarantined, "duplicates": self.duplicates,
               "gate": self.gate}
        return out if self.seconds is None else out | {"seconds": self.seconds}

    def to_json(self) -> str:
        """check.json as written."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    @classmethod
    def from_json(cls, text: str) -> StagedCheck:
        """A check record as check.json holds it."""
        d = json.loads(text)
        return cls(str(d["batch_id"]), str(d["feed"]), str(d["dataset"]), int(d["received"]), int(d["accepted"]),
                   int(d["quarantined"]), int(d["duplicates"]), dict(d["gate"]), d.get("seconds"))


def gate_record(gate: GateResult, received: int, quarantined: int) -> dict[str, Any]:
    """The gate's part of a check record: its verdict and results, the refusal sentences joined as
    `error` (when an error-severity expectation failed) and the `warnings` sentences."""
    counts = {"received": received, "quarantined": quarantined}
    refusal = [gate_sentence(r, counts) for r in gate.failed("error")]
    return (gate.to_dict() | ({"error": "; ".join(refusal)} if refusal else {})
            | {"warnings": [gate_sentence(r, counts) for r in gate.failed("warn")]})


def raise_for_gate(check: StagedCheck, stage: Path) -> None:
    """QualityGateFailedError naming the failed expectations if the gate failed the batch."""
    if check.verdict == "fail":
        raise QualityGateFailedError(
            f"batch {check.batch_id} of feed {check.feed!r} failed the quality gate: {check.error}. "
            f"It stays in landing and is not applied; see {stage / CHECK_FILE} and the rejection report, "
            "then ask the department to resend a corrected file.")


def unreadable_sentence(problem: str) -> str:
    """What a rejection report says of a file that could not be read."""
    return (f"the file is unreadable, so none of its rows could be checked: {problem}. Send it again "
            "complete, in the agreed format and encoding")


def unreadable_error(batch_id: str, feed: str, source_name: str, problem: str, reply_to: str) -> UnreadableBatchError:
    """The error a check raises for a landed file that could not be read (`reply_to`: who gets its report)."""
    return UnreadableBatchError(
        f"batch {batch_id} of feed {feed!r} ({source_name}) is unreadable and refused: {problem}. The rest of "
        f"the drop is not held back; a rejection report goes to {reply_to}'s outbox; a corrected file dropped "
        "again is taken.")


def stage_dir(home: Path, batch_id: str) -> Path:
    """The staging folder of one batch (it may not exist yet)."""
    return layout.stage_folder(home, batch_id)


def stage_dirs(home: Path) -> list[Path]:
    """The staging folder of every batch a check has started on, in name order."""
    staging = layout.staging_folder(home)
    return sorted(p for p in staging.iterdir() if p.is_dir()) if staging.exists() else []


@contextmanager
def staged_check(stage: Path) -> Iterator[Path]:
    """A private folder for one check of a batch, published into the batch's staging folder `stage`
    once it holds a check record (write_check). Two checks of one batch (two ingests of a feed at
    once) take turns on a lock; a reader of `stage` sees the last complete check."""
    make_folder(stage)
    with open_private(stage / LOCK_FILE, append=True) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also on a kill
        work = Path(tempfile.mkdtemp(prefix=".check-", dir=stage))
        try:
            yield work
        finally:
            if (work / CHECK_FILE).exists():
                _publish(work, stage)
            shutil.rmtree(work, ignore_errors=True)


def _publish(work: Path, stage: Path) -> None:
    """Move one check's files into the staging folder by renames, check.json last: from the first
    rename until the last the folder has no check.json, so nobody takes it as complete."""
    (stage / CHECK_FILE).unlink(missing_ok=True)
    produced = {f.name for f in work.iterdir()}
    for old in stage.iterdir():  # files of an earlier check this one did not write (a stale accepted.parquet)
        if old.is_file() and not old.name.startswith(".") and old.name not in produced:
            old.unlink()
    for f in sorted(work.iterdir()):
        if f.name != CHECK_FILE:
            secure(f)  # pyarrow and GX created it under the umask
            os.replace(f, stage / f.name)
    os.replace(work / CHECK_FILE, stage / CHECK_FILE)


def write_rows(work: Path, accepted: pa.Table, quarantined: pa.Table) -> None:
    """The accepted and quarantined rows of a check, into its private folder."""
    for table, name in ((accepted, ACCEPTED_FILE), (quarantined, QUARANTINED_FILE)):
        pq.write_table(table, work / name)
        secure(work / name)  # pyarrow creates files under the umask


def write_check(work: Path, check: StagedCheck) -> None:
    """The check record, into a check's private folder (staged_check publishes it last)."""
    write_atomic(work / CHECK_FILE, check.to_json())


def read_check(stage: Path) -> StagedCheck | None:
    """The last complete check of a batch, or None if no check of it has finished."""
    path = stage / CHECK_FILE
    return StagedCheck.from_json(path.read_text("utf-8")) if path.exists() else None


def accepted_rows(stage: Path) -> pa.Table:
    """The rows a batch's check accepted, whole (for a small batch; the merge reads `accepted_path`)."""
    return pq.read_table(accepted_path(stage))


def accepted_path(stage: Path) -> Path:
    """Where the rows a batch's check accepted are (Parquet, written by DuckDB or pyarrow)."""
    return stage / ACCEPTED_FILE


def quarantined_path(stage: Path) -> Path | None:
    """Where the rows a batch's check held back are, or None when no row was checked."""
    path = stage / QUARANTINED_FILE
    return path if path.exists() else None


def quarantined_rows(stage: Path, columns: Sequence[str] | None = None) -> pa.Table | None:
    """The rows a batch's check held back with their reasons (`_line`, `reasons`, `raw`), or None when
    no row was checked (refused as unreadable or unconformable, or never checked)."""
    path = quarantined_path(stage)
    return read_quarantined(path, columns) if path is not None else None
