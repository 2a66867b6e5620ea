"""The records `civicnet status` reads from a node: the ledger's batches and quarantine tallies, typed, with
aware times, and the last verify report read back from its JSON."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from schemas.contract import load_contracts
from warehouse.check import VerifyReport
from warehouse.node import attach, connect, ensure_node
from warehouse.reconcile import Mismatch, RepairedSlice
from warehouse.skipped import SkippedNode
from warehouse.status import DecidedBatch, QuarantineTally, batch_ledger, decided_batches, quarantine_summary

CITY = "440300000000"


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A city node whose ledger holds an applied residents batch and a refused facilities batch."""
    con = connect()
    attach(con, tmp_path / "city.duckdb", "city")
    ensure_node(con, "city", CITY, list(load_contracts().values()))
    con.executemany("""INSERT INTO city._civicnet.batches (batch_id, dataset, feed, department, received_at, status)
                       VALUES (?, ?, ?, ?, ?, ?)""",
                    [["b1", "residents", "public_security_residents", "public_security",
                      dt.datetime(2021, 6, 1, 2, 0, tzinfo=dt.UTC), "applied"],
                     ["b2", "facilities", "community_facilities", "community:440304001018",
                      dt.datetime(2021, 6, 2, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=8))), "refused"]])
    yield con
    con.close()


def test_decided_batches_of_the_datasets_asked_for(con: duckdb.DuckDBPyConnection) -> None:
    assert decided_batches(con, "city", {"residents"}) == [
        DecidedBatch("b1", "residents", "public_security_residents", "public_security",
                     dt.datetime(2021, 6, 1, 2, 0, tzinfo=dt.UTC), "applied")]
    assert decided_batches(con, "city", set()) == []


def test_received_times_are_aware_utc(con: duckdb.DuckDBPyConnection) -> None:
    (refused,) = decided_batches(con, "city", ["facilities"])
    assert (refused.status, refused.department) == ("refused", "community:440304001018")
    assert refused.received_at == dt.datetime(2021, 6, 2, 2, 30, tzinfo=dt.UTC)
    assert refused.received_at.utcoffset() == dt.timedelta(0)


def test_the_ledger_is_typed_with_counts_and_its_gate_kept_opaque(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("""UPDATE city._civicnet.batches SET seq = 7, source_name = 'r.csv', received = 10, applied = 8,
                   quarantined = 1, duplicates = 1, gate = '{"verdict": "warn", "results": []}'
                   WHERE batch_id = 'b1'""")
    applied, refused = batch_ledger(con, "city")
    assert (applied.batch_id, applied.seq, applied.source_name, applied.gate) == ("b1", 7, "r.csv", "warn")
    assert (applied.received, applied.applied, applied.held, applied.balanced) == (10, 8, 0, True)
    assert applied.gate_json is not None and "results" in applied.gate_json
    # a refused batch without counts or gate reads as zeros and no verdict, and balances (0 = 0)
    assert (refused.seq, refused.received, refused.gate, refused.gate_json, refused.balanced) == (
        None, 0, None, None, True)
    assert refused.received_at == dt.datetime(2021, 6, 2, 2, 30, tzinfo=dt.UTC)
    printed = applied.to_dict()
    assert printed["received_at"] == "2021-06-01T02:00:00+00:00" and printed["balanced"] is True
    assert "gate_json" not in printed and printed["gate"] == "warn"


def test_an_unbalanced_batch_says_so(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("UPDATE city._civicnet.batches SET received = 10, applied = 8 WHERE batch_id = 'b1'")
    assert [b.balanced for b in batch_ledger(con, "city")] == [False, True]


def test_quarantine_tallies_per_dataset_and_sender(con: duckdb.DuckDBPyConnection) -> None:
    con.executemany("""INSERT INTO city._civicnet.quarantine (batch_id, dataset, feed, department, line, reasons,
                       released_by) VALUES ('b1', 'residents', 'f', 'public_security', ?, ?, ?)""",
                    [[1, [{"code": "invalid_date", "field": "birth_date", "message": "m"}], None],
                     [2, [{"code": "invalid_date", "field": "birth_date", "message": "m"},
                          {"code": "unknown_division", "field": "division_code", "message": "m"}], None],
                     [3, [{"code": "invalid_date", "field": "birth_date", "message": "m"}], "b9"]])
    tally = quarantine_summary(con, "city")["residents"]["public_security"]
    assert tally == QuarantineTally(rows=3, open=2, released=1, by_reason={"invalid_date": 2, "unknown_division": 1})
    assert tally.to_dict() == {"rows": 3, "open": 2, "released": 1,
                               "by_reason": {"invalid_date": 2, "unknown_division": 1}}


def test_a_verify_report_reads_back_from_its_json() -> None:
    differs = Mismatch("440304001001", "community", "440304001000", "residents", "440304001001", "rows", "12", "11")
    behind = Mismatch("440304002001", "community", "440304002000", "facilities", "*", "behind", "9", "7")
    report = VerifyReport(dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC), 899, [differs, behind],
                          [RepairedSlice("440304001001", "440304001000", "residents", ("440304001001",), 11, 12)],
                          [behind], [SkippedNode("440305000000", "locked", "node is locked by pid 7")])
    again = VerifyReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report and again.to_dict() == report.to_dict()
    assert not again.agrees


def test_a_verify_report_of_older_homes_reads_with_utc_and_its_mismatches_remaining() -> None:
    old = {"checked_at": "2026-11-27T12:00:00", "nodes_checked": 3, "repaired": [],
           "mismatches": [{"node": "440304001001", "tier": "community", "parent": "440304001000",
                           "dataset": "residents", "division": "440304001001", "what": "rows",
                           "parent_value": 12, "node_value": 11}]}
    report = VerifyReport.from_dict(old)
    assert report.checked_at.tzinfo == dt.UTC and report.remaining == report.mismatches
    assert report.mismatches[0].detail == "rows: parent 12, node 11"
