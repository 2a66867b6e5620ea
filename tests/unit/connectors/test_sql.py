"""SQL connector on a real SQLite department database: one Parquet payload, all values text."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.parse import read_payload
from connectors.payload import Payload
from connectors.sql import SqlConnector
from schemas.errors import TerminalError

TABLE = "community_facility"
ROWS: list[tuple[Any, ...]] = [
    ("F440304001018001", "440304001018", "library", 120.0, 5, "2008-03-01", None),
    ("F440304001018002", "440304001018", "police_office", 55.5, 0, None, "图书𣵦"),
    ("F440306017001001", "0440", "other", 1000, 7, "2010-01-01", ""),
]


def make_db(path: Path, rows: list[tuple[Any, ...]] = ROWS, primary_key: bool = True) -> str:
    """A department database file with one facilities table; returns its SQLAlchemy URL."""
    pk = " PRIMARY KEY" if primary_key else ""
    with sqlite3.connect(path) as con:
        con.execute(f"CREATE TABLE {TABLE} (fac_no TEXT{pk}, comm_code TEXT, fac_type TEXT, "
                    "area REAL, staff INTEGER, open_date TEXT, note TEXT)")
        con.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    return f"sqlite:///{path}"


def fetch_one(url: str, table: str = TABLE) -> Payload:
    (payload,) = SqlConnector(url, table).fetch({})
    return payload


def test_yields_one_parquet_payload_with_all_values_as_text(tmp_path: Path) -> None:
    payload = fetch_one(make_db(tmp_path / "facilities.sqlite"))
    assert payload.name == f"{TABLE}.parquet"
    assert payload.media_type == "application/vnd.apache.parquet"
    table = pq.read_table(pa.BufferReader(payload.data))
    assert table.column_names == ["fac_no", "comm_code", "fac_type", "area", "staff", "open_date",
                                  "note"]
    assert all(f.type == pa.string() for f in table.schema)
    assert table.to_pylist()[0] == {"fac_no": "F440304001018001", "comm_code": "440304001018",
                                    "fac_type": "library", "area": "120.0", "staff": "5",
                                    "open_date": "2008-03-01", "note": None}
    assert table.column("comm_code").to_pylist()[2] == "0440"
    assert table.column("note").to_pylist() == [None, "图书𣵦", ""]
    assert table.column("staff").to_pylist() == ["5", "0", "7"]


def test_payload_reads_back_through_parse_with_line_numbers(tmp_path: Path) -> None:
    payload = fetch_one(make_db(tmp_path / "facilities.sqlite"))
    table = read_payload(payload.data, payload.media_type, payload.encoding, payload.name)
    assert table.num_rows == len(ROWS)
    assert table.column("_line").to_pylist() == [1, 2, 3]


def test_identical_content_has_identical_hash(tmp_path: Path) -> None:
    first = fetch_one(make_db(tmp_path / "one.sqlite"))
    again = fetch_one(f"sqlite:///{tmp_path / 'one.sqlite'}")
    reordered = fetch_one(make_db(tmp_path / "two.sqlite", rows=[ROWS[2], ROWS[0], ROWS[1]]))
    assert first.data == again.data
    assert first.content_hash == again.content_hash == reordered.content_hash


def test_table_without_primary_key_is_read_in_a_stable_order(tmp_path: Path) -> None:
    one = fetch_one(make_db(tmp_path / "one.sqlite", primary_key=False))
    two = fetch_one(make_db(tmp_path / "two.sqlite", rows=ROWS[::-1], primary_key=False))
    assert one.content_hash == two.content_hash


def test_changed_content_has_another_hash(tmp_path: Path) -> None:
    before = fetch_one(make_db(tmp_path / "one.sqlite"))
    changed = [(*ROWS[0][:3], 121.0, *ROWS[0][4:]), *ROWS[1:]]
    after = fetch_one(make_db(tmp_path / "two.sqlite", rows=changed))
    assert before.content_hash != after.content_hash


def test_empty_table_yields_an_empty_payload(tmp_path: Path) -> None:
    payload = fetch_one(make_db(tmp_path / "empty.sqlite", rows=[]))
    table = pq.read_table(pa.BufferReader(payload.data))
    assert table.num_rows == 0
    assert table.column_names[0] == "fac_no"


def test_missing_table_is_terminal(tmp_path: Path) -> None:
    url = make_db(tmp_path / "facilities.sqlite")
    with pytest.raises(TerminalError, match="table 'community_facilities' does not exist") as caught:
        fetch_one(url, table="community_facilities")
    assert "fix 'table' in the feed config" in str(caught.value)
    assert not caught.value.transient
