"""The incremental cursor: inclusive boundary, lag window, content digests, the saved state and states saved before."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.cursor import (
    DIGEST,
    INSTANT,
    KINDS,
    CursorError,
    CursorKind,
    CursorState,
    Window,
    content_digest,
    key_text,
    read_state,
    record_instant,
)
from connectors.feeds import SqlSource
from connectors.rest import RestSourceError, last_by_key, select_new
from connectors.sql import SqlConnector, SqlSourceError

T0 = dt.datetime.fromisoformat("2021-06-01T08:00:00+08:00")


def record(no: str, minutes: float = 0, **overrides: Any) -> dict[str, Any]:
    """A source record updated `minutes` after T0."""
    return {"station_no": no, "doctors": 3, "updated_at": (T0 + dt.timedelta(minutes=minutes)).isoformat(),
            **overrides}


def pull(records: list[dict[str, Any]], lag: float, saved: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The keys one pull takes, and the state it saves (through JSON, as the landing stores it)."""
    window = Window(read_state(saved, INSTANT), lag)
    taken = [r["station_no"] for r in records
             if window.take(key_text([r["station_no"]]), record_instant(r, "updated_at"), r)]
    return taken, json.loads(json.dumps(window.state().saved()))


# --- the digest and keys -----------------------------------------------------------------------


def test_the_digest_ignores_key_order_and_sees_every_value() -> None:
    assert content_digest({"a": 1, "b": "社"}) == content_digest({"b": "社", "a": 1})
    assert content_digest({"a": 1}) != content_digest({"a": 2})
    assert content_digest({"a": None}) != content_digest({"a": ""})


def test_the_digest_is_the_rest_connectors_so_its_states_stay_valid() -> None:
    # the value the REST connector saved for this record before the cursor module existed
    assert content_digest(record("H4", 15)) == "dec4bc7ba7e08b7e93727870366fb667cc26777a"


def test_dates_and_decimals_are_digested_by_their_text() -> None:
    day = dt.date(2021, 6, 1)
    assert content_digest({"d": day, "n": Decimal("1.50")}) == content_digest({"d": str(day), "n": "1.50"})


def test_keys_are_json_text_of_the_key_values() -> None:
    assert key_text(["F1", "社区"]) == '["F1", "社区"]'


# --- the inclusive boundary and the lag window -------------------------------------------------


def test_the_boundary_is_inclusive_at_watermark_minus_lag() -> None:
    records = [record("H1", 0), record("H2", 9.99), record("H3", 10), record("H4", 15)]
    taken, state = pull(records, 300, {})
    assert taken == ["H1", "H2", "H3", "H4"]
    assert state["watermark"] == (T0 + dt.timedelta(minutes=15)).isoformat()
    assert sorted(state["boundary"]) == ['["H3"]', '["H4"]']  # H3 sits exactly on watermark - 5 min
    assert read_state(state, INSTANT).low(300) == T0 + dt.timedelta(minutes=10)


def test_a_record_at_the_boundary_re_read_unchanged_is_not_taken_twice() -> None:
    records = [record("H3", 10), record("H4", 15)]
    _, state = pull(records, 300, {})
    taken, again = pull(records, 300, state)
    assert taken == []
    assert again["boundary"] == state["boundary"]


def test_an_updated_record_at_the_boundary_is_taken_once() -> None:
    _, state = pull([record("H3", 10), record("H4", 15)], 300, {})
    changed = [record("H3", 10), record("H4", 15, doctors=7)]
    taken, state = pull(changed, 300, state)
    assert taken == ["H4"]
    assert pull(changed, 300, state)[0] == []


def test_a_late_record_with_an_older_cursor_inside_the_lag_is_taken_once() -> None:
    _, state = pull([record("H4", 15)], 300, {})
    late = [record("H4", 15), record("H9", 11)]  # committed after the pull, stamped below the watermark
    taken, state = pull(late, 300, state)
    assert taken == ["H9"]
    assert state["watermark"] == record("H4", 15)["updated_at"]
    assert pull(late, 300, state)[0] == []


def test_a_record_below_the_lag_window_is_not_remembered() -> None:
    _, state = pull([record("H1", 0), record("H4", 15)], 60, {})
    assert list(state["boundary"]) == ['["H4"]']


def test_the_watermark_never_moves_back_and_compares_instants() -> None:
    _, state = pull([record("H1", 60)], 0, {})
    assert pull([record("H2", 0)], 0, state)[1]["watermark"] == state["watermark"]
    same_moment = (T0 + dt.timedelta(minutes=60)).astimezone(dt.UTC).isoformat()
    taken, kept = pull([record("H1", 60, updated_at=same_moment)], 0, state)
    assert kept["watermark"] == state["watermark"]  # the same instant written in UTC is not later ...
    assert taken == ["H1"]  # ... but its text changed, so the record did


def test_a_key_read_twice_keeps_both_digests_and_either_is_seen() -> None:
    twins = [record("H1", 0), record("H1", 0, doctors=4)]
    _, state = pull(twins, 0, {})
    assert state["boundary"]['["H1"]'] == sorted(content_digest(r) for r in twins)
    assert pull(twins, 0, state)[0] == []


def test_settling_an_ordered_stream_forgets_reads_below_the_window() -> None:
    window = Window(read_state({}, INSTANT), 60)
    for chunk in ([record("H1", 0), record("H2", 1)], [record("H3", 5), record("H4", 5.5)]):
        for r in chunk:
            window.take(key_text([r["station_no"]]), record_instant(r, "updated_at"), r)
        window.settle()
    assert window.taken == 4
    assert dict(window.state().boundary) == {'["H3"]': (content_digest(record("H3", 5)),),
                                             '["H4"]': (content_digest(record("H4", 5.5)),)}


def test_records_without_a_cursor_value_are_taken_and_never_in_the_boundary() -> None:
    window = Window(read_state({}, KINDS["number"]), 0)
    assert window.take('["F1"]', None, {"fac_no": "F1"})
    assert window.state() == CursorState(KINDS["number"])


# --- the kinds and the saved state -------------------------------------------------------------


@pytest.mark.parametrize(("kind", "watermark", "lag", "low"), [
    (INSTANT, T0, 90, T0 - dt.timedelta(seconds=90)),
    (KINDS["datetime"], dt.datetime(2021, 6, 1, 8), 3600, dt.datetime(2021, 6, 1, 7)),  # noqa: DTZ001 (a naive column)
    (KINDS["date"], dt.date(2021, 6, 2), 86400, dt.date(2021, 6, 1)),
    (KINDS["number"], 7, 1.5, 5),
    (KINDS["decimal"], Decimal("7.5"), 0.5, Decimal("7.0")),
    (KINDS["text"], "2021-06-01 08:00:00+08:00", 60, "2021-06-01 07:59:00+08:00"),
    (KINDS["text"], "B-0007", 60, "B-0007"),
], ids=["instant", "datetime", "date", "integer", "decimal", "iso-text", "other-text"])
def test_the_lag_moves_each_kind_back_and_the_state_survives_json(kind: CursorKind, watermark: Any, lag: float,
                                                                  low: Any) -> None:
    state = CursorState(kind, watermark, {'["F1"]': ("a" * 40,), '["F2"]': ("b" * 40, "c" * 40)})
    assert state.low(lag) == low
    saved = json.loads(json.dumps(state.saved()))
    assert (saved["cursor_type"], saved["digest"]) == (kind.name, DIGEST)
    assert saved["boundary"] == {'["F1"]': "a" * 40, '["F2"]': ["b" * 40, "c" * 40]}
    assert read_state(saved, kind) == state


def test_an_empty_state_reads_as_a_first_pull() -> None:
    assert read_state({}, INSTANT) == CursorState(INSTANT, former_digests=True)
    assert read_state({}, INSTANT).low(300) is None


# --- states saved before the cursor module -----------------------------------------------------

# saved by the REST connector before this module: no cursor_type, no digest
OLD_REST_STATE = {"watermark": "2021-06-01T08:15:00+08:00",
                  "boundary": {'["H3"]': "f3090e1fb5e6e8ecbdefee82bab014408cba7af0",
                               '["H4"]': "dec4bc7ba7e08b7e93727870366fb667cc26777a"}}


def test_an_old_rest_state_is_understood_and_its_boundary_not_taken_again() -> None:
    records = last_by_key([record("H3", 14), record("H4", 15)], ("station_no",))
    assert read_state(OLD_REST_STATE, INSTANT).watermark == T0 + dt.timedelta(minutes=15)
    fresh, state = select_new(records, "updated_at", 300, OLD_REST_STATE)
    assert fresh == []
    assert state["boundary"] == OLD_REST_STATE["boundary"]  # the digest did not change
    changed = last_by_key([record("H3", 14), record("H4", 15, doctors=8)], ("station_no",))
    assert select_new(changed, "updated_at", 300, OLD_REST_STATE)[0] == [record("H4", 15, doctors=8)]


SQL_ROWS = [("F1", "图书", 120.0, "2021-06-01T09:00:00+08:00"), ("F2", None, 55.5, "2021-06-01T10:00:00+08:00"),
            ("F2", "twin", 55.5, "2021-06-01T10:00:00+08:00"), ("F3", "", 1000, "2021-06-01T11:00:00+08:00")]
# saved by the SQL connector before this module for SQL_ROWS: sha1 of the row's values in column order
OLD_SQL_STATE = {"watermark": "2021-06-01T11:00:00+08:00", "cursor_type": "text",
                 "boundary": {'["F2"]': ["0886ad0c23089e10913fe40ef93da8d551d45e64",
                                         "9acc7deaf9665754b823db4b2f1ab175acca4ad6"],
                              '["F3"]': "d575c891c0aa5fabb1baf299be2345bef181b21a"}}


def facilities(path: Path) -> SqlConnector:
    """A facilities table without a unique key (F2 twice) and its incremental connector, lag one hour."""
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE facility (fac_no TEXT, note TEXT, area REAL, updated_at TEXT)")
        con.executemany("INSERT INTO facility VALUES (?, ?, ?, ?)", SQL_ROWS)
    con.close()
    source = SqlSource(kind="sql", url=f"sqlite:///{path}", table="facility", cursor="updated_at", lag_seconds=3600)
    return SqlConnector(source, ("fac_no",))


def test_an_old_sql_state_is_understood_and_its_boundary_not_taken_again(tmp_path: Path) -> None:
    conn = facilities(tmp_path / "f.sqlite")
    assert list(conn.fetch(OLD_SQL_STATE)) == []


def test_after_an_old_sql_state_a_changed_row_is_taken_and_the_new_digest_saved(tmp_path: Path) -> None:
    conn = facilities(tmp_path / "f.sqlite")
    with sqlite3.connect(tmp_path / "f.sqlite") as con:
        con.execute("UPDATE facility SET note = 'moved' WHERE fac_no = 'F3'")
    con.close()
    (payload,) = conn.fetch(OLD_SQL_STATE)
    rows = pq.read_table(pa.BufferReader(payload.data)).to_pylist()
    assert [(r["fac_no"], r["note"]) for r in rows] == [("F3", "moved")]
    state = json.loads(json.dumps(payload.cursor))
    assert state["digest"] == DIGEST
    f3 = {"fac_no": "F3", "note": "moved", "area": "1000.0", "updated_at": "2021-06-01T11:00:00+08:00"}
    assert state["boundary"]['["F3"]'] == content_digest(f3)
    assert list(conn.fetch(state)) == []  # the new digests are seen as well


def test_a_state_in_the_new_shape_does_not_accept_the_former_sql_digest() -> None:
    row = {"fac_no": "F3", "note": "", "area": "1000.0", "updated_at": "2021-06-01T11:00:00+08:00"}
    boundary = {'["F3"]': "d575c891c0aa5fabb1baf299be2345bef181b21a"}  # the former digest of `row`
    for saved, taken in (({**OLD_SQL_STATE, "boundary": boundary}, False),
                         ({**OLD_SQL_STATE, "boundary": boundary, "digest": DIGEST}, True)):
        window = Window(read_state(saved, KINDS["text"]), 3600)
        assert window.take('["F3"]', row["updated_at"], row) is taken


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "2021-06-01 08:00", "2021-06-01T08:00:00", 1622505600, "王小明"],
                         ids=["missing", "no-seconds-no-offset", "naive", "number", "text"])
def test_a_record_cursor_without_an_aware_timestamp_is_refused_and_not_quoted(value: Any) -> None:
    with pytest.raises(CursorError, match=r"cursor field 'updated_at' is .*, not an ISO 8601 timestamp with a "
                                          r"UTC offset; fix 'cursor\.field'") as caught:
        record_instant(record("H1", updated_at=value), "updated_at")
    assert value is None or str(value) not in str(caught.value)


def test_connectors_report_a_bad_cursor_as_their_own_error() -> None:
    with pytest.raises(RestSourceError, match="a str of 3 characters"):
        select_new(last_by_key([record("H1", updated_at="王小明")], ("station_no",)), "updated_at", 0, {})


@pytest.mark.parametrize(("saved", "kind", "message"), [
    ({"watermark": "yesterday"}, INSTANT,
     r"the feed state holds watermark 'yesterday', not an ISO timestamp with offset; reset the feed's state"),
    ({"watermark": "2021-06-01T08:00:00"}, INSTANT, "not an ISO timestamp with offset"),
    ({"watermark": "June", "cursor_type": "date"}, KINDS["date"], "'June', not an ISO date"),
    ({"watermark": "7", "cursor_type": "number"}, KINDS["number"], "'7', not a number"),
    ({"watermark": "2021-06-01", "cursor_type": "text"}, KINDS["number"],
     "holds a 'text' cursor but the cursor column is now 'number'; reset the feed's state"),
    ({"watermark": "2021-06-01T08:00:00+08:00"}, KINDS["datetime"], "holds a 'instant' cursor"),
    ({"watermark": None, "boundary": ["x"]}, INSTANT, "boundary is not a map of record keys to content digests"),
    ({"watermark": None, "boundary": {'["F1"]': 7}}, INSTANT, "boundary is not a map"),
    ({"watermark": None, "digest": "sha256-json"}, INSTANT, "holds 'sha256-json' digests"),
], ids=["broken", "naive", "date", "number-as-text", "changed-type", "rest-state-for-sql", "boundary-list",
        "boundary-number", "unknown-digest"])
def test_a_state_that_cannot_be_read_asks_for_a_reset(saved: dict[str, Any], kind: CursorKind, message: str) -> None:
    with pytest.raises(CursorError, match=message) as caught:
        read_state(saved, kind)
    assert "reset the feed's state" in str(caught.value)


def test_the_sql_connector_reports_a_broken_state_as_its_own_error(tmp_path: Path) -> None:
    with pytest.raises(SqlSourceError, match="holds a 'number' cursor but the cursor column is now 'text'"):
        list(facilities(tmp_path / "f.sqlite").fetch({"watermark": 7, "cursor_type": "number"}))
