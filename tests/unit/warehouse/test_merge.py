"""Merging a checked batch into the city node: SCD2 history, tombstones, ledger, high-water mark,
exactly once, all or nothing. Against a real DuckDB file and the shipped contracts."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

import warehouse.merge
from quality.conform import QUARANTINE_SCHEMA
from schemas.citizen_id import check_char
from schemas.contract import Contract, load_contracts
from schemas.derive import arrow_schema
from warehouse.merge import (
    BatchInput,
    BatchOutcome,
    QuarantineCloseError,
    Scope,
    ScopedBatchLinesError,
    apply_batch,
    close_quarantined,
    ledger_entry,
    owed_reports,
    refuse_batch,
    settle_report,
)
from warehouse.node import attach, ensure_node, high_water_mark
from warehouse.stores import node_path

CITY = "440300000000"
NODE = "city"
CONTRACTS = load_contracts()
RESIDENTS: Contract = CONTRACTS["residents"]
COMMUNITY_A = "440304001018"  # 福田 南园街道 滨江社区
COMMUNITY_B = "440304002016"  # 福田 园岭街道 红荔社区
# every table a batch may write, with a stable order for comparing snapshots
NODE_TABLES = ("residents", "residents_history", "_civicnet.batches", "_civicnet.hwm",
               "_civicnet.tombstones", "_civicnet.quarantine")



def at(text: str) -> dt.datetime:
    """An aware time from ISO 8601 (what the merge is handed as a batch's arrival)."""
    return dt.datetime.fromisoformat(text)

def citizen_id(n: int, born: str = "19800101", sex_digit: int = 1) -> str:
    """A valid GB 11643 number for Futian (440304), the n-th of its birth date."""
    first17 = f"440304{born}{n % 100:02d}{sex_digit}"
    return first17 + check_char(first17)


def make_resident(n: int = 1, **overrides: Any) -> dict[str, Any]:
    """One accepted residents row; `n` makes the citizen ID unique."""
    row: dict[str, Any] = {
        "citizen_id": citizen_id(n), "name": f"张{n}", "sex": "1", "birth_date": dt.date(1980, 1, 1),
        "residence_type": "registered", "household_id": f"H{COMMUNITY_A}{n:06d}",
        "address": f"福田区南园街道滨江路{n}号", "phone": f"138{n:08d}", "division_code": COMMUNITY_A,
        "moved_in_date": dt.date(2010, 5, 1), "status": "active", "vintage": 2020,
    }
    return row | overrides


def make_quarantined(lines: list[int], code: str = "invalid_citizen_id") -> pa.Table:
    """Quarantined rows as conform hands them over: line, key (resident `line`'s ID), reasons, raw JSON."""
    return pa.Table.from_pylist(
        [{"_line": line, "key": citizen_id(line), "reasons": [{"code": code, "field": "citizen_id", "message": "bad"}],
          "raw": f'{{"sfzh": "bad{line}"}}'} for line in lines], QUARANTINE_SCHEMA)


def make_batch(rows: list[dict[str, Any]] | None = None, quarantined: list[int] | None = None,
               **overrides: Any) -> tuple[pa.Table, pa.Table, BatchInput]:
    """(accepted, quarantined, BatchInput) for residents; `received` defaults to what balances."""
    rows = [make_resident(n) for n in (1, 2, 3)] if rows is None else rows
    accepted = pa.Table.from_pylist(rows, arrow_schema(RESIDENTS))
    bad = make_quarantined(quarantined or [])
    fields: dict[str, Any] = {
        "batch_id": "batch-0001", "feed": "public_security_residents", "department": "public_security",
        "source_name": "residents_0001_initial.csv", "received_at": at("2021-06-01T02:00:00+00:00"),
        "duplicates": 0, "gate": {"verdict": "pass", "results": []},
    }
    fields |= overrides
    fields.setdefault("received", accepted.num_rows + bad.num_rows + fields["duplicates"])
    return accepted, bad, BatchInput(**fields)


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection with a fresh city node file attached as `city`."""
    connection = duckdb.connect()
    attach(connection, node_path(tmp_path, CITY), NODE)
    ensure_node(connection, NODE, CITY, list(CONTRACTS.values()))
    yield connection
    connection.close()


def apply(con: duckdb.DuckDBPyConnection, batch: tuple[pa.Table, pa.Table, BatchInput]) -> BatchOutcome:
    accepted, bad, meta = batch
    return apply_batch(con, NODE, RESIDENTS, accepted, bad, meta)


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """Every row of every table a batch writes, as sorted text (ledger decision time excluded)."""
    out = {}
    for table in NODE_TABLES:
        cols = "* EXCLUDE (decided_at)" if table == "_civicnet.batches" else "*"
        rows = con.execute(f"SELECT {cols} FROM {NODE}.{table}").fetchall()
        out[table] = sorted(map(repr, rows))
    return out


def count(con: duckdb.DuckDBPyConnection, table: str, where: str = "true", params: list[Any] | None = None) -> int:
    row = con.execute(f"SELECT count(*) FROM {NODE}.{table} WHERE {where}", params or []).fetchone()
    assert row is not None
    return int(row[0])


def history(con: duckdb.DuckDBPyConnection, cid: str) -> list[tuple[Any, ...]]:
    return con.execute(f"""SELECT phone, division_code, _valid_from, _valid_to, _batch_id, _seq
                           FROM {NODE}.residents_history WHERE citizen_id = ? ORDER BY _seq""",
                       [cid]).fetchall()


def test_apply_batch_writes_rows_history_ledger_and_mark(con: duckdb.DuckDBPyConnection) -> None:
    outcome = apply(con, make_batch(quarantined=[7]))

    assert outcome == BatchOutcome("batch-0001", "residents", 1, "applied", received=4, applied=3,
                                   unchanged=0, quarantined=1, duplicates=0, moved=0)
    current = con.execute(f"""SELECT citizen_id, _seq, _batch_id, _row_hash IS NOT NULL
                              FROM {NODE}.residents ORDER BY citizen_id""").fetchall()
    assert current == [(citizen_id(n), 1, "batch-0001", True) for n in (1, 2, 3)]
    assert count(con, "residents_history", "_valid_to IS NULL AND _seq = 1 AND _batch_id = 'batch-0001'") == 3
    assert count(con, "residents_history") == 3
    assert ledger_entry(con, NODE, "batch-0001") == outcome
    assert con.execute(f"SELECT line, reasons[1].code FROM {NODE}._civicnet.quarantine").fetchall() == [
        (7, "invalid_citizen_id")]
    assert high_water_mark(con, NODE, "residents") == 1
    assert count(con, "_civicnet.tombstones") == 0


@pytest.mark.parametrize("second", ["same_batch", "same_id_other_content"])
def test_same_batch_id_again_is_a_no_op_returning_the_first_outcome(
        con: duckdb.DuckDBPyConnection, second: str) -> None:
    first = make_batch(quarantined=[7])
    outcome = apply(con, first)
    before = snapshot(con)
    again = first if second == "same_batch" else make_batch(
        [make_resident(n, phone="13900000000") for n in (1, 2, 3, 4)], quarantined=[8, 9])

    assert apply(con, again) == outcome
    assert snapshot(con) == before
    assert count(con, "_civicnet.batches") == 1


def test_changed_row_closes_its_old_version_and_adds_a_new_one(con: duckdb.DuckDBPyConnection) -> None:
    apply(con, make_batch())
    changed = [make_resident(1), make_resident(2, phone="13900000002"), make_resident(3)]
    t2 = at("2021-06-02T02:00:00+00:00")
    outcome = apply(con, make_batch(changed, batch_id="batch-0002", received_at=t2))

    assert (outcome.seq, outcome.applied, outcome.unchanged, outcome.duplicates) == (2, 1, 2, 2)
    versions = history(con, citizen_id(2))
    assert [(v[0], v[4], v[5]) for v in versions] == [("13800000002", "batch-0001", 1),
                                                      ("13900000002", "batch-0002", 2)]
    old, new = versions
    assert old[3] == new[2] == t2
    assert new[3] is None
    for n in (1, 3):  # unchanged rows keep their one open version
        assert [(v[3], v[5]) for v in history(con, citizen_id(n))] == [(None, 1)]
    assert con.execute(f"SELECT phone, _seq FROM {NODE}.residents WHERE citizen_id = ?",
                       [citizen_id(2)]).fetchall() == [("13900000002", 2)]
    assert count(con, "residents") == 3
    assert high_water_mark(con, NODE, "residents") == 2


@pytest.mark.parametrize(
    ("rows", "quarantined", "in_batch_duplicates", "expected"),
    [
        ([1, 2, 3], [], 0, (0, 0, 3)),
        ([1, 2, 3, 4], [11, 12], 3, (1, 2, 3 + 3)),
        ([1, 2], [5], 1, (0, 1, 1 + 2)),
    ],
    ids=["all_unchanged", "one_new_with_quarantine_and_repeats", "nothing_new"],
)
def test_every_row_is_applied_quarantined_or_a_duplicate(
        con: duckdb.DuckDBPyConnection, rows: list[int], quarantined: list[int], in_batch_duplicates: int,
        expected: tuple[int, int, int]) -> None:
    apply(con, make_batch())  # residents 1, 2, 3 already held
    outcome = apply(con, make_batch([make_resident(n) for n in rows], quarantined, batch_id="batch-0002",
                                    duplicates=in_batch_duplicates))

    assert (outcome.applied, outcome.quarantined, outcome.duplicates) == expected
    assert outcome.received == len(rows) + len(quarantined) + in_batch_duplicates
    assert outcome.received == outcome.applied + outcome.quarantined + outcome.duplicates
    ledger = con.execute(f"""SELECT received, applied + quarantined + duplicates FROM {NODE}._civicnet.batches
                             WHERE batch_id = 'batch-0002'""").fetchall()
    assert ledger == [(outcome.received, outcome.received)]


@pytest.mark.parametrize("to", [COMMUNITY_B, "440303001001"], ids=["other_street", "other_district"])
def test_move_writes_a_tombstone_naming_the_old_division(con: duckdb.DuckDBPyConnection, to: str) -> None:
    apply(con, make_batch())
    rows = [make_resident(1), make_resident(2, division_code=to), make_resident(3, phone="13900000003")]
    outcome = apply(con, make_batch(rows, batch_id="batch-0002", received_at=at("2021-06-02T02:00:00+00:00")))

    assert (outcome.moved, outcome.applied) == (1, 2)
    tombstones = con.execute(f"SELECT * FROM {NODE}._civicnet.tombstones").fetchall()
    assert tombstones == [("residents", citizen_id(2), COMMUNITY_A, 2, "batch-0002", "public_security_residents")]
    assert con.execute(f"SELECT division_code FROM {NODE}.residents WHERE citizen_id = ?",
                       [citizen_id(2)]).fetchall() == [(to,)]
    assert [(v[1], v[3] is None) for v in history(con, citizen_id(2))] == [(COMMUNITY_A, False), (to, True)]


def refuse(con: duckdb.DuckDBPyConnection, batch: tuple[pa.Table, pa.Table, BatchInput]) -> BatchOutcome:
    """What the pipeline does with a batch the gate failed: its clean rows are held in landing."""
    accepted, bad, meta = batch
    return refuse_batch(con, NODE, RESIDENTS, meta, bad, held=accepted.num_rows)


def refused_batch() -> tuple[pa.Table, pa.Table, BatchInput]:
    return make_batch([make_resident(n, phone="13900000000") for n in (1, 2, 3, 4)], quarantined=[5, 6],
                      batch_id="batch-0002", duplicates=1, gate={"verdict": "fail", "results": []})


def test_refuse_batch_records_the_refusal_and_changes_no_data(con: duckdb.DuckDBPyConnection) -> None:
    apply(con, make_batch())
    before = snapshot(con)

    outcome = refuse(con, refused_batch())

    assert (outcome.status, outcome.seq, outcome.applied, outcome.quarantined, outcome.held) == \
        ("refused", None, 0, 2, 4)
    assert outcome.received == 7 == outcome.applied + outcome.quarantined + outcome.duplicates + outcome.held
    assert ledger_entry(con, NODE, "batch-0002") == outcome
    after = snapshot(con)
    unchanged = ("residents", "residents_history", "_civicnet.hwm", "_civicnet.tombstones")
    assert {t: after[t] for t in unchanged} == {t: before[t] for t in unchanged}
    assert high_water_mark(con, NODE, "residents") == 1
    assert con.execute(f"""SELECT line FROM {NODE}._civicnet.quarantine WHERE batch_id = 'batch-0002'
                           ORDER BY line""").fetchall() == [(5,), (6,)]


def test_refusing_the_same_batch_again_is_a_no_op(con: duckdb.DuckDBPyConnection) -> None:
    outcome = refuse(con, refused_batch())
    before = snapshot(con)

    assert refuse(con, refused_batch()) == outcome
    assert snapshot(con) == before


def test_a_refused_batch_is_not_applied_later_under_the_same_id(con: duckdb.DuckDBPyConnection) -> None:
    batch = make_batch(batch_id="batch-0001", gate={"verdict": "fail", "results": []})
    refused = refuse(con, batch)

    assert apply(con, batch) == refused
    assert count(con, "residents") == 0
    assert high_water_mark(con, NODE, "residents") == 0


def test_a_refusal_that_fails_half_way_leaves_the_node_as_before(
        con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch) -> None:
    apply(con, make_batch())
    before = snapshot(con)

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("ledger crashed")

    monkeypatch.setattr(warehouse.merge, "_write_ledger", crash)
    with pytest.raises(RuntimeError, match="crashed"):
        refuse(con, refused_batch())
    assert snapshot(con) == before

    monkeypatch.undo()
    assert refuse(con, refused_batch()).status == "refused"
    assert count(con, "_civicnet.quarantine", "batch_id = 'batch-0002'") == 2


@pytest.mark.parametrize("step", ["_write_ledger", "_write_quarantine", "set_high_water_mark"])
def test_a_failure_inside_the_transaction_leaves_the_node_as_before(
        con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    apply(con, make_batch())
    before = snapshot(con)
    moved = [make_resident(1, division_code=COMMUNITY_B), make_resident(2, phone="13900000002"), make_resident(4)]
    second = make_batch(moved, quarantined=[9], batch_id="batch-0002", received_at=at("2021-06-02T02:00:00+00:00"))

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"{step} crashed")

    monkeypatch.setattr(warehouse.merge, step, crash)
    with pytest.raises(RuntimeError, match="crashed"):
        apply(con, second)
    assert snapshot(con) == before
    assert ledger_entry(con, NODE, "batch-0002") is None

    monkeypatch.undo()
    outcome = apply(con, second)
    assert (outcome.seq, outcome.applied, outcome.moved, outcome.quarantined) == (2, 3, 1, 1)
    assert count(con, "residents") == 4
    assert count(con, "residents_history") == 3 + 3
    assert count(con, "_civicnet.tombstones") == 1
    assert high_water_mark(con, NODE, "residents") == 2


def test_a_failure_survives_reopening_the_file_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a killed merge leaves on disk: the file reopened holds the state before the batch."""
    path = node_path(tmp_path, CITY)
    first = duckdb.connect()
    attach(first, path, NODE)
    ensure_node(first, NODE, CITY, list(CONTRACTS.values()))
    apply(first, make_batch())
    before = snapshot(first)
    monkeypatch.setattr(warehouse.merge, "_write_ledger", lambda *a, **k: (_ for _ in ()).throw(OSError("disk")))
    with pytest.raises(OSError):
        apply(first, make_batch([make_resident(5)], batch_id="batch-0002"))
    first.close()

    reopened = duckdb.connect()
    attach(reopened, path, NODE, read_only=True)
    try:
        assert snapshot(reopened) == before
    finally:
        reopened.close()



def with_deleted(rows: list[dict[str, Any]], deleted: list[bool]) -> pa.Table:
    """Accepted rows as conform hands them over when the feed has a soft-delete column."""
    table = pa.Table.from_pylist(rows, arrow_schema(RESIDENTS))
    return table.append_column("_deleted", pa.array(deleted, pa.bool_()))


def test_a_soft_delete_closes_the_version_tombstones_the_key_and_removes_the_row(
        con: duckdb.DuckDBPyConnection) -> None:
    apply(con, make_batch())
    gone = make_resident(2)
    rows = [gone, make_resident(9)]
    second = BatchInput("batch-0002", "public_security_residents", "public_security", "d.csv",
                        "2021-06-02T02:00:00+00:00", 2, 0, {"verdict": "pass"})
    outcome = apply_batch(con, NODE, RESIDENTS, with_deleted(rows, [True, False]), make_quarantined([]), second)
    assert (outcome.applied, outcome.deleted, outcome.unchanged) == (2, 1, 0)
    assert outcome.received == outcome.applied + outcome.quarantined + outcome.duplicates
    assert count(con, "residents", "citizen_id = ?", [gone["citizen_id"]]) == 0
    assert count(con, "residents") == 3  # 1, 3 and the new 9
    (closed,) = history(con, gone["citizen_id"])
    assert closed[3] is not None and closed[4] == "batch-0001"  # the version is closed, not erased
    tomb = con.execute(f"SELECT key, division_code, _batch_id FROM {NODE}._civicnet.tombstones").fetchall()
    assert tomb == [(gone["citizen_id"], COMMUNITY_A, "batch-0002")]
    assert ledger_entry(con, NODE, "batch-0002") == outcome


def test_deleting_a_key_the_node_does_not_hold_is_counted_unchanged(con: duckdb.DuckDBPyConnection) -> None:
    batch = BatchInput("batch-0001", "public_security_residents", "public_security", "d.csv",
                       "2021-06-02T02:00:00+00:00", 1, 0, {"verdict": "pass"})
    outcome = apply_batch(con, NODE, RESIDENTS, with_deleted([make_resident(5)], [True]), make_quarantined([]), batch)
    assert (outcome.applied, outcome.deleted, outcome.unchanged, outcome.duplicates) == (0, 0, 1, 1)
    assert count(con, "_civicnet.tombstones") == 0


SCOPE_A = Scope(COMMUNITY_A, "key {0} is a record of {1} {2}", "citizen_id",
                {COMMUNITY_A: "南园街道滨江社区居委会", COMMUNITY_B: "园岭街道红荔社区居委会"})


def scoped(rows: list[dict[str, Any]], deleted: list[bool] | None = None, batch_id: str = "batch-0002",
           scope: Scope = SCOPE_A, lines: bool = True) -> tuple[pa.Table, pa.Table, BatchInput]:
    """A batch community A pushed (as conform hands it over: with each row's line and values as sent)."""
    table = with_deleted(rows, deleted or [False] * len(rows))
    if lines:
        table = table.append_column("_line", pa.array(range(1, len(rows) + 1), pa.int64())).append_column(
            "_raw", pa.array([f'{{"sfzh": "{r["citizen_id"]}", "xm": "{r["name"]}"}}' for r in rows]))
    batch = BatchInput(batch_id, "public_security_residents", "community:" + scope.division, "d.csv",
                       "2021-06-02T02:00:00+00:00", len(rows), 0, {"verdict": "pass"}, scope=scope)
    return table, make_quarantined([]), batch


def test_a_scoped_batch_cannot_delete_rows_of_another_community(con: duckdb.DuckDBPyConnection) -> None:
    apply(con, make_batch([make_resident(1), make_resident(2, division_code=COMMUNITY_B)]))
    before = con.execute(f"SELECT * FROM {NODE}.residents WHERE division_code = ?", [COMMUNITY_B]).fetchall()
    rows = [make_resident(1), make_resident(2)]  # both claim community A; row 2 really lives in B
    outcome = apply(con, scoped(rows, [True, True]))
    assert (outcome.deleted, outcome.quarantined, outcome.unchanged) == (1, 1, 0)
    assert outcome.received == outcome.applied + outcome.quarantined + outcome.duplicates
    assert con.execute(f"SELECT * FROM {NODE}.residents").fetchall() == before
    assert con.execute(f"SELECT key FROM {NODE}._civicnet.tombstones").fetchall() == [(citizen_id(1),)]
    assert con.execute(f"SELECT line, key, reasons[1].code FROM {NODE}._civicnet.quarantine").fetchall() == [
        (2, citizen_id(2), "key_owned_elsewhere")]


@pytest.mark.parametrize("to", [COMMUNITY_A, "440304001000"], ids=["community_sender", "street_scope"])
def test_a_scoped_batch_cannot_take_over_another_communitys_record(con: duckdb.DuckDBPyConnection, to: str) -> None:
    apply(con, make_batch([make_resident(1), make_resident(2, division_code=COMMUNITY_B)]))
    held = con.execute(f"SELECT * FROM {NODE}.residents ORDER BY citizen_id").fetchall()
    taken = make_resident(2, division_code=COMMUNITY_A, name="李四", phone="13999999999")
    scope = SCOPE_A if to == COMMUNITY_A else Scope(to, SCOPE_A.message, "citizen_id", SCOPE_A.names)
    outcome = apply(con, scoped([make_resident(1, phone="13900000001"), taken, make_resident(3)], scope=scope))

    assert (outcome.applied, outcome.quarantined, outcome.moved, outcome.unchanged) == (2, 1, 0, 0)
    assert outcome.received == outcome.applied + outcome.quarantined + outcome.duplicates
    after = {r[0]: r for r in con.execute(f"SELECT * FROM {NODE}.residents").fetchall()}
    assert after[citizen_id(2)] == held[1]  # untouched: same content, same version
    assert [(v[1], v[3]) for v in history(con, citizen_id(2))] == [(COMMUNITY_B, None)]
    assert count(con, "_civicnet.tombstones") == 0
    (line, key, reasons, raw), = con.execute(f"""SELECT line, key, reasons, raw FROM {NODE}._civicnet.quarantine
                                                 WHERE batch_id = 'batch-0002'""").fetchall()
    assert (line, key) == (2, citizen_id(2))
    assert reasons == [{"code": "key_owned_elsewhere", "field": "citizen_id",
                        "message": f"key {citizen_id(2)} is a record of {COMMUNITY_B} 园岭街道红荔社区居委会"}]
    assert json.loads(raw) == {"sfzh": citizen_id(2), "xm": "李四"}  # what the sender sent, nothing of B's row
    assert ledger_entry(con, NODE, "batch-0002") == outcome


def test_a_scoped_batch_releases_only_its_own_quarantine_entries(con: duckdb.DuckDBPyConnection) -> None:
    accepted, bad, batch = make_batch([], quarantined=[5])  # the department's entry for resident 5
    apply(con, (accepted, bad, batch))
    own = make_batch([], quarantined=[6], batch_id="batch-a", department="community:" + COMMUNITY_A,
                     scope=SCOPE_A)
    apply(con, (own[0].append_column("_line", pa.array([], pa.int64())), own[1], own[2]))
    outcome = apply(con, scoped([make_resident(5), make_resident(6)], batch_id="batch-a2"))

    assert outcome.released == 1
    released = con.execute(f"SELECT batch_id, released_by FROM {NODE}._civicnet.quarantine ORDER BY line").fetchall()
    assert released == [("batch-0001", None), ("batch-a", "batch-a2")]
    department = apply(con, make_batch([make_resident(5)], batch_id="batch-0003"))
    assert department.released == 1  # the owner department, confined to nothing, releases its own


def test_a_scoped_batch_without_line_numbers_is_refused_before_any_change(con: duckdb.DuckDBPyConnection) -> None:
    apply(con, make_batch())
    before = snapshot(con)
    with pytest.raises(ScopedBatchLinesError, match="run its check again"):
        apply(con, scoped([make_resident(1)], lines=False))
    assert snapshot(con) == before


def test_a_corrected_resubmission_releases_the_quarantined_rows_of_its_keys(con: duckdb.DuckDBPyConnection) -> None:
    first = apply(con, make_batch(quarantined=[7, 8]))
    assert first.quarantined == 2
    open_rows = "SELECT line FROM city._civicnet.quarantine WHERE released_by IS NULL ORDER BY line"
    assert con.execute(open_rows).fetchall() == [(7,), (8,)]
    accepted, bad, batch = make_batch([make_resident(7)], batch_id="b-corrected",
                                      received_at=at("2021-06-02T02:00:00+00:00"))
    outcome = apply_batch(con, "city", RESIDENTS, accepted, bad, batch)
    assert outcome.released == 1
    assert con.execute(open_rows).fetchall() == [(8,)]
    (released_by,), = con.execute("SELECT released_by FROM city._civicnet.quarantine WHERE line = 7").fetchall()
    assert released_by == "b-corrected"
    assert ledger_entry(con, "city", "b-corrected") == outcome


def test_quarantined_rows_can_be_closed_by_hand_all_or_nothing(con: duckdb.DuckDBPyConnection) -> None:
    apply(con, make_batch(quarantined=[7, 8, 9]))
    open_lines = "SELECT line FROM city._civicnet.quarantine WHERE released_by IS NULL ORDER BY line"
    with pytest.raises(QuarantineCloseError, match="none was closed"):
        close_quarantined(con, "city", "batch-0001", [7, 12], "resent under the corrected ID")
    assert con.execute(open_lines).fetchall() == [(7,), (8,), (9,)]
    with pytest.raises(QuarantineCloseError, match="say why"):
        close_quarantined(con, "city", "batch-0001", [7], " ")
    assert close_quarantined(con, "city", "batch-0001", [7, 9], "resent under the corrected ID") == 2
    assert con.execute(open_lines).fetchall() == [(8,)]
    (who,), = con.execute("SELECT DISTINCT released_by FROM city._civicnet.quarantine WHERE line <> 8").fetchall()
    assert who == "manual: resent under the corrected ID"


def test_a_decided_batch_owes_its_report_until_it_is_settled(con: duckdb.DuckDBPyConnection) -> None:
    apply(con, make_batch(quarantined=[7]))
    refuse(con, refused_batch())
    apply(con, make_batch([make_resident(9)], batch_id="batch-0003", feed="other_feed"))

    assert owed_reports(con, NODE) == ["batch-0001", "batch-0002", "batch-0003"]
    assert owed_reports(con, NODE, "public_security_residents") == ["batch-0001", "batch-0002"]
    settle_report(con, NODE, "batch-0001")
    assert owed_reports(con, NODE) == ["batch-0002", "batch-0003"]
    assert apply(con, make_batch(quarantined=[7])).batch_id == "batch-0001"  # seen before: not owed again
    assert owed_reports(con, NODE, "public_security_residents") == ["batch-0002"]
