"""The ledger read for `civicnet status`: the batches a node decided, typed, with aware times."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from schemas.contract import load_contracts
from warehouse.node import attach, connect, ensure_node
from warehouse.status import DecidedBatch, decided_batches

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
