"""A pushed batch's state before the city has decided it: received, processing while a run holds the
city node, checked once its check is staged (counts and quarantined rows from staging)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from civicnet.pipeline.batches import batch_status
from quality.stage import StagedCheck

BATCH = "ab" * 32
RECEIPT = {"batch_id": BATCH, "dataset": "community_expenditures", "sender": "ca", "rows": 3}


class Runs:
    def __init__(self, error: str | None = None) -> None:
        self.node_lock = threading.Lock()
        self.error = error

    def last_error(self, batch_id: str) -> str | None:
        return self.error


def test_a_landed_batch_not_yet_checked_is_received(tmp_path: Path) -> None:
    status = batch_status(tmp_path, RECEIPT, Runs())
    assert status == RECEIPT | {"status": "received", "gate": None, "error": None, "quarantined_rows": [],
                                "counts": {"received": 3, "applied": None, "held": None, "quarantined": None,
                                           "duplicates": None}}


def test_a_batch_is_processing_while_a_run_holds_the_city_and_says_why_a_run_failed(tmp_path: Path) -> None:
    runs = Runs("the run failed: node locked")
    with runs.node_lock:
        status = batch_status(tmp_path, RECEIPT, runs)
    assert (status["status"], status["error"]) == ("processing", "the run failed: node locked")
    assert "report" not in status


def test_a_checked_batch_shows_its_staged_counts_and_quarantined_rows(tmp_path: Path) -> None:
    stage = tmp_path / "staging" / BATCH
    stage.mkdir(parents=True)
    check = StagedCheck(BATCH, "community_expenditures", "community_expenditures", 3, 1, 1, 1, {"verdict": "pass"})
    (stage / "check.json").write_text(check.to_json())
    reasons = [{"code": "bad_division", "field": "社区代码", "message": "unknown"}]
    pq.write_table(pa.table({"_line": [2], "reasons": [reasons], "raw": [json.dumps({"社区代码": "x"})]}),
                   stage / "quarantined.parquet")

    status = batch_status(tmp_path, RECEIPT, Runs())

    assert (status["status"], status["gate"]) == ("checked", "pass")
    assert status["counts"] == {"received": 3, "applied": None, "held": None, "quarantined": 1, "duplicates": 1}
    assert status["quarantined_rows"] == [{"line": 2, "reasons": reasons, "raw": {"社区代码": "x"}}]
