"""A rejection report is owed from the moment its batch is decided, and the ledger remembers it.

A merge that dies between its commit and the outbox write (simulated: the outbox write fails
once) leaves the batch decided, so no later pull lists it as pending; the next merge of the
feed, or `pipeline.write_owed_reports` (what `civicnet report` runs), still writes the report,
and a report once written is not owed again. On an empty home, through the real pipeline steps
(conform, GX gate, merge into a DuckDB city node)."""

from __future__ import annotations

import csv
import hashlib
import io
import random
from pathlib import Path

import duckdb
import pytest
from conftest import AS_OF

import civicnet.pipeline.reports
from civicnet import context, pipeline
from civicnet.demo.workbooks import expenditure_rows
from connectors.parse import read_payload
from schemas.media import CSV
from warehouse import landing
from warehouse.stores import node_path

DATASET = FEED = "community_expenditures"
COMMUNITY = "440304001018"
HEADER = ["支出编号", "社区代码", "年度", "季度", "支出类别", "金额", "说明"]


def land_push(home: Path, seed: int, bad_amount: str | None = "一千") -> str:
    """Land a community's file as the gateway does (one row's amount not a number: quarantined)."""
    rows = expenditure_rows(COMMUNITY, random.Random(seed))
    if bad_amount is not None:
        rows[0] = (*rows[0][:5], bad_amount, rows[0][6])  # type: ignore[assignment]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    data = out.getvalue().encode("utf-8")
    table = read_payload(data, CSV, "utf-8", "expenditures.csv")
    manifest = landing.Manifest(
        batch_id=hashlib.sha256(data).hexdigest(), feed=FEED, department=f"community:{COMMUNITY}", dataset=DATASET,
        source_name="expenditures.csv", media_type=CSV, encoding="utf-8", byte_size=len(data),
        row_count=table.num_rows, received_at=landing.utc_now(), cursor={}, sender="station", scope=COMMUNITY)
    landing.land(home, manifest, data, table)
    return manifest.batch_id


def report_files(home: Path, batch_id: str) -> list[str]:
    folder = home / "outbox" / "station" / DATASET
    return sorted(p.name for p in folder.glob(f"{batch_id}.*")) if folder.exists() else []


def owed(home: Path) -> list[str]:
    with duckdb.connect(str(node_path(home, context.city_code())), read_only=True) as con:
        return [r[0] for r in con.execute("SELECT batch_id FROM _civicnet.batches WHERE report_owed").fetchall()]


def die_once_in_the_outbox(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the first outbox write fail as a kill would (after the merge committed); returns the calls."""
    calls: list[str] = []
    real = civicnet.pipeline.reports.write_outbox

    def write(home: Path, report: object) -> list[Path]:
        calls.append(report.batch_id)  # type: ignore[attr-defined]
        if len(calls) == 1:
            raise OSError("killed between the merge's commit and the outbox write")
        return real(home, report)  # type: ignore[arg-type]

    monkeypatch.setattr(civicnet.pipeline.reports, "write_outbox", write)
    return calls


def test_a_report_lost_after_the_commit_is_written_by_the_next_merge(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = land_push(tmp_path, 1)
    die_once_in_the_outbox(monkeypatch)
    with pytest.raises(OSError, match="killed"):
        pipeline.ingest_feed(tmp_path, FEED, AS_OF)
    assert pipeline.pending_batches(tmp_path, FEED) == []  # decided: no pull lists it again
    assert report_files(tmp_path, first) == []

    second = land_push(tmp_path, 2, bad_amount=None)  # a clean batch: it owes no report file
    pipeline.ingest_feed(tmp_path, FEED, AS_OF)

    assert report_files(tmp_path, first) == [f"{first}.csv", f"{first}.json", f"{first}.txt"]
    assert report_files(tmp_path, second) == []
    assert owed(tmp_path) == []  # the ledger owes nothing more


def test_a_rerun_with_nothing_new_writes_the_owed_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = land_push(tmp_path, 3)
    calls = die_once_in_the_outbox(monkeypatch)
    with pytest.raises(OSError):
        pipeline.ingest_feed(tmp_path, FEED, AS_OF)

    assert pipeline.ingest_feed(tmp_path, FEED, AS_OF) == []  # nothing pending, yet the report is owed
    assert report_files(tmp_path, first) == [f"{first}.csv", f"{first}.json", f"{first}.txt"]
    assert owed(tmp_path) == []
    written = len(calls)
    pipeline.ingest_feed(tmp_path, FEED, AS_OF)
    assert len(calls) == written  # once written, a report is not owed again


def test_civicnet_report_writes_the_reports_still_owed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = land_push(tmp_path, 4)
    die_once_in_the_outbox(monkeypatch)
    with pytest.raises(OSError):
        pipeline.ingest_feed(tmp_path, FEED, AS_OF)

    assert pipeline.write_owed_reports(tmp_path) == [first]
    assert report_files(tmp_path, first) == [f"{first}.csv", f"{first}.json", f"{first}.txt"]
    assert pipeline.write_owed_reports(tmp_path) == []
