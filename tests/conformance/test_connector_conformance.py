"""One conformance suite over every connector kind (modelled on the Meltano SDK's standard tap tests).

Every kind serves the same department records (the health department's station register, in its
own column names) from a real source: a folder of dropped files, a table in SQLite, PostgreSQL
and MariaDB, the department's REST API on loopback, a Singer tap subprocess, and the push
gateway. Each is driven through the real landing code (`pipeline.land_feed`, or an HTTP upload
for the gateway), conformed with the feed's mapping and merged into a real city node file, and
must pass the same tests:

- schema mapping: source records arrive as typed contract rows;
- incremental resume after a crash between extract and commit: nothing lost, nothing twice;
- an empty source: no batch, no error;
- bad credentials: a terminal error that does not show the secret, nothing landed;
- a server error, then recovery: a transient error, nothing landed, then every row once.

A kind to which a test cannot apply skips it with the reason (a local folder has no credentials
and no server).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from harnesses import COMMUNITY, HARNESSES, Harness, record

from civicnet import context
from quality.conform import conform_batch
from schemas.contract import load_contracts
from schemas.errors import TerminalError, TransientError
from warehouse import landing
from warehouse.merge import BatchInput, apply_batch
from warehouse.node import attach, ensure_node
from warehouse.stores import node_path

CONTRACT = load_contracts()["health_stations"]
AS_OF = dt.date(2021, 6, 30)
CITY = "440300000000"


@pytest.fixture(params=sorted(HARNESSES))
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """A fresh source of one kind, torn down after the test."""
    harness = HARNESSES[request.param](tmp_path / "source", tmp_path / "home")
    try:
        yield harness
    finally:
        harness.close()


def pull(source: Harness, home: Path) -> list[str]:
    """One pull of the source into the home's landing; returns the batches landed now."""
    return source.pull(home)


def merged_rows(home: Path, source: Harness) -> dict[str, dict[str, Any]]:
    """Conform and merge every landed batch, in the order received, into a fresh city node;
    returns its current rows by key and checks every batch balances."""
    feed = source.feed
    con = duckdb.connect()
    attach(con, node_path(home, CITY), "city")
    ensure_node(con, "city", CITY, [CONTRACT])
    try:
        for m in landing.landed_batches(home, feed.dataset, feed.slug):
            conformed = conform_batch(landing.raw_path(home, feed.dataset, m.batch_id), CONTRACT,
                                      context.source_mapping(feed), {2020: context.registry()}, AS_OF, m.scope)
            assert conformed.quarantined.num_rows == 0, conformed.quarantined.to_pylist()
            batch = BatchInput(m.batch_id, feed.slug, feed.department, m.source_name, m.received_at,
                               conformed.received, conformed.duplicates, {"verdict": "pass"}, m.scope)
            out = apply_batch(con, "city", CONTRACT, conformed.accepted.drop(["_line"]), conformed.quarantined,
                              batch)
            assert out.received == out.applied + out.quarantined + out.duplicates
        cur = con.execute("SELECT * EXCLUDE (_seq, _row_hash, _valid_from, _batch_id) FROM city.health_stations")
        names = [d[0] for d in cur.description]
        return {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}
    finally:
        con.close()


def expected(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The contract rows the source records must become (the latest version of each live key)."""
    out = {}
    for r in records:
        if r["deleted"] == "true":
            out.pop(r["station_no"], None)
            continue
        out[r["station_no"]] = {
            "station_id": r["station_no"], "division_code": r["community_code"], "name": r["station_name"],
            "station_type": {"社康中心": "centre", "社康站": "station"}[r["kind"]], "doctors": int(r["doctors"]),
            "nurses": int(r["nurses"]), "vintage": 2020,
            "opened_on": dt.date.fromisoformat(r["opened"]) if r["opened"] else None}
    return out


def test_schema_mapping(source: Harness, tmp_path: Path) -> None:
    records = [record(1), record(2, kind="社康中心", doctors=12), record(3, opened="")]
    source.put(records)
    landed = pull(source, tmp_path / "home")
    assert len(landed) >= 1
    raw = pq.read_table(landing.raw_path(tmp_path / "home", "health_stations", landed[0]))
    assert set(source.feed.fields) <= set(raw.column_names)
    rows = merged_rows(tmp_path / "home", source)
    assert rows == expected(records)
    assert rows["H" + COMMUNITY + "02"]["station_type"] == "centre"
    assert rows["H" + COMMUNITY + "03"]["opened_on"] is None


def test_incremental_resume_after_a_crash_between_extract_and_commit(
        source: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    first = [record(1), record(2), record(3)]
    source.put(first)

    source.crash_after_landing(monkeypatch)
    with pytest.raises((KeyboardInterrupt, TransientError)):
        pull(source, home)
    monkeypatch.undo()
    assert [m.row_count for m in landing.landed_batches(home, "health_stations")] == [3]  # it did land
    assert landing.feed_state(home, "health_stations", source.feed.slug) == {}
    later = [record(2, doctors=9, updated_at="2021-06-02T08:00:00+08:00"),
             record(4, updated_at="2021-06-02T09:00:00+08:00")]
    source.put(later)
    pull(source, home)
    rows = merged_rows(home, source)
    assert rows == expected(first + later)  # nothing lost, each key once with its latest values
    again = pull(source, home)
    if source.dedupes_boundary:
        assert again == []  # nothing more to take
    else:  # a Singer tap re-emits its boundary records: they land, and change nothing
        assert merged_rows(home, source) == rows


def test_an_empty_source_lands_nothing(source: Harness, tmp_path: Path) -> None:
    source.put([])
    assert pull(source, tmp_path / "home") == []
    assert landing.landed_batches(tmp_path / "home", "health_stations") == []


def test_deletes_arrive_as_tombstones(source: Harness, tmp_path: Path) -> None:
    home = tmp_path / "home"
    source.put([record(1), record(2)])
    pull(source, home)
    source.put([record(2, deleted="true", updated_at="2021-06-03T08:00:00+08:00")])
    pull(source, home)
    assert sorted(merged_rows(home, source)) == ["H" + COMMUNITY + "01"]


def test_bad_credentials_are_terminal_and_never_shown(source: Harness, tmp_path: Path) -> None:
    secret = source.break_credentials()
    source.put([record(1)])
    with pytest.raises(TerminalError) as err:
        pull(source, tmp_path / "home")
    assert secret not in str(err.value)
    assert landing.landed_batches(tmp_path / "home", "health_stations") == []


def test_a_server_error_then_recovery(source: Harness, tmp_path: Path) -> None:
    home = tmp_path / "home"
    records = [record(1), record(2), record(3)]
    source.put(records)
    source.break_server()
    with pytest.raises(TransientError):
        pull(source, home)
    assert landing.landed_batches(home, "health_stations") == []
    assert landing.feed_state(home, "health_stations", source.feed.slug) == {}
    source.heal()
    pull(source, home)
    assert merged_rows(home, source) == expected(records)
