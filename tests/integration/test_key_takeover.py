"""A community cannot take over another community's record by sending its key (invariant 5).

Through the real gateway on loopback, on an empty home, with the inline trigger merging at the
city node; the one district both communities lie in is synced by the pipeline's own function.
A victim community sends its expenditures, then an update of one of them that is quarantined
(an open quarantine entry on a current key). An attacker community then sends that key
anchored in its own community. The victim's record must stay where it is at every tier, the
victim's quarantine entry must stay open, and the attacker's row is quarantined as
`key_owned_elsewhere`, with a report that names the owner but shows nothing of its record.
A department (the dataset's owner, not confined to a community) may still move a record."""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import requests
from conftest import AS_OF

from civicnet import pipeline
from civicnet.demo.workbooks import expenditure_id, expenditure_rows
from civicnet.gateway.app import GatewayServer
from civicnet.gateway.trigger import InlineTrigger
from connectors.push.senders import add_sender
from schemas.divisions import load_registry
from schemas.media import CSV
from warehouse.stores import node_path

pytestmark = pytest.mark.slow  # a gateway, four merges and one district's sync (about 100 nodes)

DATASET = "community_expenditures"
REGISTRY = load_registry(2020)
DISTRICT = "440304000000"  # 福田
ATTACKER = "440304001018"  # 南园街道 滨江社区
VICTIM = "440304002016"  # 园岭街道 红荔社区
HEADER = ["支出编号", "社区代码", "年度", "季度", "支出类别", "金额", "说明"]
TAKEN = expenditure_id(VICTIM, 1)  # the key the attacker sends
MOVED = expenditure_id(VICTIM, 2)  # the key the department moves, legitimately
SECRET_NOTE = "红荔社区长者食堂专项"  # the victim's record content the attacker must never see
SECRET_AMOUNT = "8642.19"


def csv_bytes(rows: list[tuple[object, ...]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def victim_rows() -> list[tuple[object, ...]]:
    rows = expenditure_rows(VICTIM, random.Random(7))
    return [(*rows[0][:5], SECRET_AMOUNT, SECRET_NOTE), *rows[1:]]


@dataclass
class Run:
    """The gateway and what each push became."""

    url: str
    home: Path
    tokens: dict[str, str]
    batches: dict[str, str]

    def push(self, who: str, rows: list[tuple[object, ...]]) -> str:
        answer = requests.post(f"{self.url}/v1/datasets/{DATASET}/batches", data=csv_bytes(rows), timeout=60,
                               headers={"Content-Type": CSV, "X-Filename": f"{who}.csv",
                                        "Authorization": f"Bearer {self.tokens[who]}"})
        assert answer.status_code == 202, answer.text
        return str(answer.json()["batch_id"])

    def report(self, who: str, fmt: str) -> str:
        answer = requests.get(f"{self.url}/v1/batches/{self.batches[who]}/report", params={"format": fmt},
                              headers={"Authorization": f"Bearer {self.tokens[who]}"}, timeout=60)
        assert answer.status_code == 200, answer.text
        return answer.text


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    home = tmp_path_factory.mktemp("takeover")
    tokens = {"victim": add_sender(home, "station-victim", "community", None, VICTIM),
              "attacker": add_sender(home, "station-attacker", "community", None, ATTACKER),
              "ca": add_sender(home, "ca", "department", "civil_affairs")}
    trigger = InlineTrigger(home, AS_OF, sync=False)
    server = GatewayServer(home, trigger).start()
    state = Run(server.url, home, tokens, {})
    own = victim_rows()
    bad_update = [(*own[0][:5], "一千", own[0][6]), *own[1:]]  # amount not a number: quarantined, key current
    attacker = [*expenditure_rows(ATTACKER, random.Random(8)), (TAKEN, ATTACKER, 2021, 2, "活动", 1, "接管")]
    moved = next(r for r in own if r[0] == MOVED)
    pushes = [("victim", own), ("victim_update", bad_update), ("attacker", attacker),
              ("ca", [(MOVED, ATTACKER, *moved[2:])])]
    try:
        for name, rows in pushes:
            who = name.removesuffix("_update")
            state.batches[name] = state.push(who, rows)
            assert trigger.wait_idle(300)
            assert trigger.last_error(state.batches[name]) is None
        pipeline.sync_district(home, DISTRICT)
        yield state
    finally:
        server.stop()


def current(home: Path, code: str, key: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(node_path(home, code)), read_only=True) as con:
        return con.execute("""SELECT division_code, amount_yuan, note FROM community_expenditures
                              WHERE expenditure_id = ?""", [key]).fetchall()


def city_sql(home: Path, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(node_path(home, REGISTRY.root().code)), read_only=True) as con:
        return con.execute(sql, params).fetchall()


def test_the_victims_record_stays_at_every_tier(run: Run) -> None:
    held = [(VICTIM, float(SECRET_AMOUNT), SECRET_NOTE)]
    street = REGISTRY.get(VICTIM).parent_code
    for code in (REGISTRY.root().code, DISTRICT, street, VICTIM):
        assert current(run.home, code, TAKEN) == held, code
    assert current(run.home, ATTACKER, TAKEN) == []
    assert current(run.home, REGISTRY.get(ATTACKER).parent_code, TAKEN) == []
    versions = city_sql(run.home, """SELECT division_code, _valid_to IS NULL FROM community_expenditures_history
                                     WHERE expenditure_id = ?""", [TAKEN])
    assert versions == [(VICTIM, True)]
    assert city_sql(run.home, "SELECT count(*) FROM _civicnet.tombstones WHERE key = ?", [TAKEN]) == [(0,)]


def test_the_victims_open_quarantine_entry_is_not_released(run: Run) -> None:
    entries = city_sql(run.home, """SELECT department, released_by FROM _civicnet.quarantine
                                    WHERE batch_id = ?""", [run.batches["victim_update"]])
    assert entries == [(f"community:{VICTIM}", None)]


def test_the_attackers_row_is_quarantined_as_key_owned_elsewhere(run: Run) -> None:
    (status, received, applied, quarantined, duplicates, moved, released), = city_sql(
        run.home, """SELECT status, received, applied, quarantined, duplicates, moved, released
                     FROM _civicnet.batches WHERE batch_id = ?""", [run.batches["attacker"]])
    assert (status, quarantined, moved, released) == ("applied", 1, 0, 0)
    assert received == applied + quarantined + duplicates
    assert applied == received - 1  # the attacker's own rows are applied
    reasons = city_sql(run.home, """SELECT key, list_transform(reasons, lambda r: r.code) FROM _civicnet.quarantine
                                    WHERE batch_id = ?""", [run.batches["attacker"]])
    assert reasons == [(TAKEN, ["key_owned_elsewhere"])]


def test_the_report_names_the_owner_and_shows_nothing_of_its_record(run: Run) -> None:
    report = json.loads(run.report("attacker", "json"))
    (row,) = report["rows"]
    (reason,) = row["reasons"]
    victim = REGISTRY.get(VICTIM)
    owner = f"{VICTIM} {REGISTRY.get(victim.parent_code).name}{victim.name}"
    assert (reason["code"], reason["field"], row["key"]) == ("key_owned_elsewhere", "expenditure_id", TAKEN)
    assert owner in reason["message"] and TAKEN in reason["message"]
    assert row["line"] == len(expenditure_rows(ATTACKER, random.Random(8))) + 1
    assert row["raw"]["说明"] == "接管"  # the values the attacker sent, as sent
    # the report speaks zh-CN by default (issue 9 item 18): the paragraph still names the code
    assert "key_owned_elsewhere" in report["what_to_do"] and "再次发送也不会解除隔离" in report["what_to_do"]
    other_keys = {r[0] for r in victim_rows()} - {TAKEN}
    for fmt in ("json", "csv", "text"):
        text = run.report("attacker", fmt)
        assert owner in text, fmt
        for secret in (SECRET_NOTE, SECRET_AMOUNT, run.batches["victim"], run.batches["victim_update"],
                       "station-victim", *other_keys):
            assert secret not in text, (fmt, secret)
    outbox = run.home / "outbox" / "station-attacker" / DATASET / f"{run.batches['attacker']}.txt"
    assert "key_owned_elsewhere" in outbox.read_text("utf-8")


def test_the_owner_department_may_still_move_a_record(run: Run) -> None:
    (moved,), = city_sql(run.home, "SELECT moved FROM _civicnet.batches WHERE batch_id = ?", [run.batches["ca"]])
    assert moved == 1
    assert [r[0] for r in current(run.home, ATTACKER, MOVED)] == [ATTACKER]
    assert current(run.home, VICTIM, MOVED) == []


def test_the_status_answer_lists_the_row_the_merge_quarantined(run: Run) -> None:
    answer = requests.get(f"{run.url}/v1/batches/{run.batches['attacker']}",
                          headers={"Authorization": f"Bearer {run.tokens['attacker']}"}, timeout=60)
    status = answer.json()
    assert (status["status"], status["counts"]["quarantined"]) == ("applied", 1)
    (row,) = status["quarantined_rows"]
    assert [r["code"] for r in row["reasons"]] == ["key_owned_elsewhere"]
    assert SECRET_NOTE not in answer.text and SECRET_AMOUNT not in answer.text
