"""`civicnet reports missing`: who has not submitted a periodic report, a live query of the city
node against the obligations of the divisions in force (schemas/reporting.py).

On an empty home, through the real gateway on loopback with the inline trigger: two communities
push their 2021Q2 expenditures, a third pushes only 2021Q1. The 2021Q2 missing list is then every
other community, with the third among them; the rate is two over the communities in force, and a
street's view lists only its own communities. Text output is Chinese first."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import AS_OF

from civicnet.cli import main
from civicnet.demo.workbooks import expenditure_rows
from civicnet.gateway.app import GatewayServer
from civicnet.gateway.trigger import InlineTrigger
from connectors.push.senders import add_sender
from schemas.divisions import load_registry
from schemas.media import CSV

pytestmark = pytest.mark.slow  # a gateway and three merges into the city

DATASET = "community_expenditures"
HEADER = ["支出编号", "社区代码", "年度", "季度", "支出类别", "金额", "说明"]
REGISTRY = load_registry(2020)
STREET = "440304001000"  # 南园街道
Q2 = ("440304001018", "440304001019")  # in 南园: they submit 2021Q2
Q1_ONLY = "440304001020"  # in 南园: submits 2021Q1 only


def rows_of(code: str, quarter: int) -> list[list[object]]:
    rows = expenditure_rows(code, random.Random(code))
    return [[r[0].replace("2021Q2", f"2021Q{quarter}"), r[1], r[2], quarter, *r[4:]] for r in rows]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("reports")
    assert main(["--home", str(home), "init"]) == 0
    pushes = [(code, 2) for code in Q2] + [(Q1_ONLY, 1)]
    tokens = {code: add_sender(home, f"station-{code}", "community", None, code) for code, _ in pushes}
    trigger = InlineTrigger(home, AS_OF, sync=False)
    server = GatewayServer(home, trigger).start()
    try:
        for code, quarter in pushes:
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows([HEADER, *rows_of(code, quarter)])
            answer = requests.post(f"{server.url}/v1/datasets/{DATASET}/batches", data=out.getvalue().encode(),
                                   timeout=60, headers={"Content-Type": CSV, "X-Filename": f"{code}.csv",
                                                        "Authorization": f"Bearer {tokens[code]}"})
            assert answer.status_code == 202, answer.text
            assert trigger.wait_idle(300)
            assert trigger.last_error(str(answer.json()["batch_id"])) is None
        yield home
    finally:
        server.stop()


def missing(home: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["--home", str(home), "reports", "missing", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_the_missing_list_is_every_community_in_force_that_did_not_submit(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    found = missing(home, capsys, "--period", "2021Q2")
    communities = {d.code for d in REGISTRY.by_tier("community")}
    assert found["period"] == "2021Q2"
    assert {m["unit"] for m in found["missing"]} == communities - set(Q2)
    assert len(found["missing"]) == len(communities) - 2  # each obligation once
    first = next(m for m in found["missing"] if m["unit"] == Q1_ONLY)
    assert first == {"report": DATASET, "period": "2021Q2", "unit": Q1_ONLY, "tier": "community", "vintage": 2020,
                     "rule": "exists_on_period_end", "due": "2021-07-15", "lock": "2021-08-14",
                     "name": REGISTRY.get(Q1_ONLY).name, "overdue": True}
    rate = found["rate"][DATASET]
    assert (rate["expected"], rate["submitted"]) == (len(communities), 2)
    assert rate["rate"] == round(2 / len(communities), 4) and found["unexpected"][DATASET] == []
    futian = rate["by_district"]["440304000000"]
    assert futian["submitted"] == 2 and futian["expected"] == len([c for c in communities if c.startswith("440304")])
    assert all(r["rate"] <= 1 for r in rate["by_district"].values())


def test_a_street_sees_only_its_communities_and_the_first_quarter_apart(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    street = missing(home, capsys, "--period", "2021Q2", "--under", STREET)
    own = {d.code for d in REGISTRY.children(STREET)}
    assert {m["unit"] for m in street["missing"]} == own - set(Q2)
    assert street["rate"][DATASET]["expected"] == len(own)
    q1 = missing(home, capsys, "--period", "2021Q1", "--under", STREET)
    assert {m["unit"] for m in q1["missing"]} == own - {Q1_ONLY}
    assert missing(home, capsys, "--period", "2021Q2", "--tier", "street")["missing"] == []  # streets owe none


def test_text_is_chinese_first_and_a_bad_period_names_the_fix(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["--home", str(home), "reports", "missing", "--period", "2021Q2", "--under", STREET]) == 0
    text = capsys.readouterr().out
    assert text.startswith("2021Q2 未报送") and "报送率" in text and REGISTRY.get(Q1_ONLY).name in text
    assert main(["--home", str(home), "reports", "missing", "--period", "2021-Q2"]) == 2
    assert "write it as 2021, 2021Q2 or 2021-05" in capsys.readouterr().err
    assert main(["--home", str(home), "reports", "missing", "--period", "2021-05"]) == 0  # no monthly report
    assert main(["--home", str(home), "reports", "missing", "--period", "2021Q2", "--report", "residents"]) == 2
    assert "is not a periodic report" in capsys.readouterr().err


def test_the_status_and_the_quality_page_show_the_latest_period_submitted(home: Path) -> None:
    from civicnet.pipeline.status import collect, quality_page

    status = collect(home)
    assert [r["period"] for r in status.reporting] == ["2021Q2"]  # the latest period with a submission
    assert status.to_dict()["reporting"][0]["rate"][DATASET]["submitted"] == 2
    page = quality_page(home, "reports-test").read_text("utf-8")
    section = page[page.index('id="reporting"'):]
    assert "应报 810 个单位，已报 2 个" in section and REGISTRY.get(Q1_ONLY).name in section


@pytest.mark.parametrize(("now", "period"), [("2021-07-15T23:59:59+08:00", "2021Q1"),
                                             ("2021-07-16T00:00:00+08:00", "2021Q2")])
def test_without_a_submission_the_page_shows_the_latest_period_already_due(round_one_home: Path, now: str,
                                                                           period: str) -> None:
    from civicnet.pipeline.obligations import standings

    shown = standings(round_one_home, dt.datetime.fromisoformat(now))
    assert [s["period"] for s in shown] == [period]
    assert shown[0]["rate"][DATASET]["submitted"] == 0
    assert len(shown[0]["missing"]) == len(REGISTRY.by_tier("community"))


@pytest.fixture(scope="module")
def synced(home: Path) -> Path:
    """The same home with 福田's subtree synced (every submitting community is there): each hop of
    it holds its subtree's expenditures; the other districts' nodes do not exist, so no hop counts
    them."""
    from civicnet import pipeline

    pipeline.sync_district(home, "440304000000")
    return home


def _rollup(home: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["--home", str(home), "reports", "rollup", "--period", "2021Q2", "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def _amounts(code: str, quarter: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for row in rows_of(code, quarter):
        out[str(row[4])] = round(out.get(str(row[4]), 0.0) + float(row[5]), 2)  # type: ignore[arg-type]
    return out


def test_every_hop_rolls_up_what_its_children_hold_and_delivers_to_finance(
        synced: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, found = _rollup(synced, capsys, "--deliver")
    assert code == 0
    (rolled,) = found["rollups"]
    assert rolled["mismatches"] == [] and rolled["by"] == ["category"] and rolled["measures"] == ["amount_yuan"]
    nodes = {n["code"]: n for n in rolled["nodes"]}
    wanted = sum(sum(_amounts(c, 2).values()) for c in Q2)  # only 2021Q2 counts; Q1_ONLY's first quarter does not
    for hop in ("440300000000", "440304000000", STREET):
        assert sum(g["amount_yuan"] for g in nodes[hop]["groups"]) == pytest.approx(wanted)
        assert sorted(g["by"][0] for g in nodes[hop]["groups"]) == ["activities", "facilities", "office", "other",
                                                                    "services", "staff"]  # the contract's codes
    assert sum(g["amount_yuan"] for g in nodes[Q2[0]]["groups"]) == pytest.approx(sum(_amounts(Q2[0], 2).values()))
    assert sum(g["rows"] for g in nodes[STREET]["groups"]) == sum(len(rows_of(c, 2)) for c in Q2)
    (delivered,) = found["delivered"]
    assert delivered["department"] == "finance" and delivered["new"] is True
    folder = synced / "outbox" / "finance" / DATASET
    assert sorted(p.name for p in folder.iterdir()) == ["deliveries.json", "rollup-2021Q2.csv", "rollup-2021Q2.json"]
    header = (folder / "rollup-2021Q2.csv").read_text("utf-8").splitlines()[0]
    assert header == "区划代码,名称,层级,期间,支出类别,行数,金额（元）"
    assert "440300000000,深圳市,市,2021Q2," in (folder / "rollup-2021Q2.csv").read_text("utf-8")
    again = _rollup(synced, capsys, "--deliver")[1]["delivered"][0]
    assert again["new"] is False and again["sha256"] == delivered["sha256"]
    assert len(json.loads((folder / "deliveries.json").read_text("utf-8"))) == 1  # delivered once


def test_the_network_run_delivers_the_latest_period_submitted_and_nothing_where_none_was(
        synced: Path, round_one_home: Path) -> None:
    from civicnet import pipeline

    (delivered,) = pipeline.deliver_rollups(synced)
    assert (delivered["department"], delivered["period"]) == ("finance", "2021Q2")
    assert pipeline.deliver_rollups(round_one_home) == []  # no community has submitted there
    assert not (round_one_home / "outbox" / "finance").exists()


def test_a_hop_that_differs_from_its_child_names_the_child_and_delivers_nothing(
        synced: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import duckdb

    from warehouse.stores import node_path

    with duckdb.connect(str(node_path(synced, Q2[1]))) as con:
        con.execute("UPDATE community_expenditures SET amount_yuan = amount_yuan + 100 "
                    "WHERE expenditure_id = (SELECT min(expenditure_id) FROM community_expenditures)")
    code, found = _rollup(synced, capsys)
    assert code == 1
    (mismatch,) = found["rollups"][0]["mismatches"]
    assert (mismatch["node"], mismatch["child"], mismatch["measure"]) == (STREET, Q2[1], "amount_yuan")
    assert mismatch["child_value"] - mismatch["node_value"] == pytest.approx(100)
    outbox = synced / "outbox" / "finance" / DATASET
    before = {p.name: p.read_bytes() for p in outbox.glob("*")}
    assert main(["--home", str(synced), "reports", "rollup", "--period", "2021Q2", "--deliver"]) == 2
    assert Q2[1] in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in outbox.glob("*")} == before  # nothing delivered
    from civicnet.pipeline.verify import verify_district

    assert [r.node for r in verify_district(synced, "440304000000", repair=True).repaired] == [Q2[1]]
    assert _rollup(synced, capsys)[0] == 0
