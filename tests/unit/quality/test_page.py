"""The quality page from a status (the real records the pipeline composes): sections, escaping of sent
text, highlights, numbers, files."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from civicnet.pipeline.network import IndexedNode
from civicnet.pipeline.status import Status
from quality.freshness import FreshnessRow
from quality.page import DATA_DOCS, PageError, render_page, write_quality_page
from quality.verdict import ExpectationOutcome, LedgerGate
from schemas.contract import Cadence
from warehouse.check import VerifyReport
from warehouse.merge import Decision
from warehouse.reconcile import Mismatch
from warehouse.status import LedgerEntry, QuarantineTally

EVIL = '<script>alert("x")</script>'
SECTIONS = ("batches", "gate", "quarantine", "freshness", "reconciliation", "reporting")


T = dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC)


def _batch(batch_id: str, feed: str, source: str, status: Decision, gate: str, received_at: dt.datetime,
           received: int, applied: int, quarantined: int, duplicates: int, held: int) -> LedgerEntry:
    return LedgerEntry(batch_id, 1, feed.split("_", 1)[-1], feed, "dept", source, received_at, status, received,
                       applied, quarantined, duplicates, 0, 0, held, 0, 0, gate)


def _freshness(department: str, dataset: str, feed: str, cadence: Cadence, last: dt.datetime | None,
               due: dt.datetime | None, late: bool, sentence: str) -> FreshnessRow:
    return FreshnessRow(department, dataset, feed, None, (), cadence, last, last, "applied" if last else None, due,
                        late, None, sentence)


def make_status(home: Path, **overrides: Any) -> Status:
    """A status as civicnet.pipeline.status.collect makes it, with department-sent text in it."""
    warned = ExpectationOutcome("expect_column_values_to_be_between", "birth_date", "warn", False,
                                unexpected_count=3, partial_unexpected=(EVIL,))
    status = Status(
        home=home, vintage=2020,
        nodes=(IndexedNode("city", "440300000000", home / "extracts/city/440300000000.duckdb", {}),),
        batches=(_batch("a" * 64, "public_security_residents", f"residents{EVIL}.csv", "applied", "pass", T,
                        1234567, 1234000, 500, 67, 0),
                 _batch("b" * 64, "health_stations", "stations.json", "refused", "fail", T + dt.timedelta(hours=1),
                        40, 0, 0, 0, 40)),
        gate=(LedgerGate("a" * 64, "residents", "warn", (warned, *(
                  ExpectationOutcome(f"passing_{i}", None, "error", True) for i in range(8)))),
              LedgerGate("b" * 64, "health_stations", "fail", (),
                         error=f"primary key station_id is not unique {EVIL}")),
        quarantine={"residents": {"public_security": QuarantineTally(2500, 2000, 500, {"invalid_date": 1500})}},
        freshness=(_freshness("health", "health_stations", "health_stations", "weekly", None, None, True,
                              f"health_stations from health: never updated {EVIL}"),
                   _freshness("statistics", "divisions", "statistics_divisions", "yearly", T,
                              dt.datetime(2027, 12, 12, 10, tzinfo=dt.UTC), False,
                              "divisions from statistics: on time")),
        reconciliation=VerifyReport(T + dt.timedelta(hours=2), 899, [
            Mismatch("440304001001", "community", "440304001000", "residents", "440304001001", "rows", "11",
                     f"10 {EVIL}")]),
        reporting=(REPORTING,))
    return replace(status, **overrides)


def _missing(unit: str, name: str, overdue: bool) -> dict[str, Any]:
    return {"report": "community_expenditures", "period": "2021Q2", "unit": unit, "tier": "community",
            "vintage": 2020, "rule": "exists_on_period_end", "due": "2021-07-15", "lock": "2021-08-14",
            "name": name, "overdue": overdue}


# as civicnet.pipeline.obligations.missing_reports returns it
REPORTING = {"period": "2021Q2", "start": "2021-04-01", "end": "2021-06-30", "as_of": "2021-07-20T09:00:00+08:00",
             "missing": [_missing("440304001018", "滨江社区居委会", True),
                         _missing("440304001019", "沙埔头社区", False)],
             "rate": {"community_expenditures": {"expected": 810, "submitted": 808, "rate": 0.9975, "by_district": {
                 "440304000000": {"expected": 115, "submitted": 113, "rate": 0.9826, "name": "福田区"}}}},
             "unexpected": {"community_expenditures": ["440304001099"]}}


class _Rows(HTMLParser):
    """Collects element ids, script tags and the class of each table row."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.scripts = 0
        self.row_classes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(str(found["id"]))
        if tag == "script":
            self.scripts += 1
        if tag == "tr":
            self.row_classes.append(found.get("class") or "")


def parse(page: str) -> _Rows:
    parser = _Rows()
    parser.feed(page)
    return parser


def test_sent_text_is_escaped_everywhere(tmp_path: Path) -> None:
    page = render_page(make_status(tmp_path), {"run_id": EVIL}, "en")
    assert "<script" not in page
    # source name, run id (title and header), gate sample, gate error (batches and gate), detail (the
    # freshness sentence is now written by the page from the row's fields, not copied from the status)
    assert page.count("&lt;script&gt;") == 7
    assert parse(page).scripts == 0


def test_every_section_and_document_basics(tmp_path: Path) -> None:
    page = render_page(make_status(tmp_path), None)
    assert set(SECTIONS) <= parse(page).ids
    assert '<html lang="zh-CN">' in page and '<meta charset="utf-8">' in page
    assert 'name="viewport"' in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from the network


def test_refused_batch_highlighted_with_gate_error(tmp_path: Path) -> None:
    page = render_page(make_status(tmp_path), None, "en")
    row = re.search(r'<tr class="bad"><td>health_stations</td>.*?</tr>', page)
    assert row is not None
    assert "primary key station_id is not unique" in row.group(0)
    assert "held" in page and ">40<" in row.group(0)


def test_numbers_have_thousands_separators(tmp_path: Path) -> None:
    page = render_page(make_status(tmp_path), None, "en")
    for number in ("1,234,567", "1,234,000", "2,500", "1,500", "2,000", "899"):
        assert f">{number}<" in page or f"{number} nodes" in page, number


def test_late_rows_first_and_highlighted(tmp_path: Path) -> None:
    status = make_status(tmp_path)
    status = replace(status, freshness=status.freshness[::-1])  # the on-time row first: the late one is still first
    page = render_page(status, None, "en")
    freshness = page[page.index('id="freshness"'):page.index('id="reconciliation"')]
    classes = parse(freshness).row_classes
    assert classes[1:] == ["late", ""]  # after the header row
    assert "1 late" in freshness


def test_warned_expectation_and_mismatch_are_listed(tmp_path: Path) -> None:
    page = render_page(make_status(tmp_path), None, "en")
    gate = page[page.index('id="gate"'):page.index('id="quarantine"')]
    assert '<tr class="warn"><td>residents</td>' in gate and "3 unexpected" in gate
    reconciliation = page[page.index('id="reconciliation"'):]
    assert "440304001001" in reconciliation and "1 mismatches" in reconciliation


def test_reconciliation_never_run(tmp_path: Path) -> None:
    page = render_page(make_status(tmp_path, reconciliation=None), None, "en")
    assert "Not run yet" in page[page.index('id="reconciliation"'):]


def test_data_docs_link_only_when_built(tmp_path: Path) -> None:
    assert "Data Docs" not in render_page(make_status(tmp_path), None, "en")
    docs = tmp_path / DATA_DOCS
    docs.parent.mkdir(parents=True)
    docs.write_text("<html></html>", "utf-8")
    assert 'href="../../quality/gx/data_docs/index.html"' in render_page(make_status(tmp_path), None, "en")


def test_write_quality_page_writes_run_and_index(tmp_path: Path) -> None:
    first = write_quality_page(tmp_path, make_status(tmp_path), "run-1")
    second = write_quality_page(tmp_path, make_status(tmp_path, batches=()), "run-2")
    assert first == tmp_path / "reports" / "quality" / "run-1.html"
    assert "public_security_residents" in first.read_text("utf-8")
    index = (second.parent / "index.html").read_text("utf-8")
    assert index == second.read_text("utf-8") and "public_security_residents" not in index
    assert sorted(p.name for p in second.parent.iterdir()) == ["index.html", "run-1.html", "run-2.html"]


def test_default_run_id_is_a_utc_timestamp(tmp_path: Path) -> None:
    path = write_quality_page(tmp_path, make_status(tmp_path))
    assert re.fullmatch(r"\d{8}T\d{6}Z\.html", path.name)


@pytest.mark.parametrize("run_id", ["../escape", "manual__2026-11-27T10:00:00+00:00", "a/b"], ids=repr)
def test_unsafe_run_id_is_refused(tmp_path: Path, run_id: str) -> None:
    with pytest.raises(PageError, match="run id"):
        write_quality_page(tmp_path, make_status(tmp_path), run_id)


def test_the_page_is_in_chinese_by_default_and_english_on_request(tmp_path: Path) -> None:
    zh, en = render_page(make_status(tmp_path), None), render_page(make_status(tmp_path), None, "en")
    for word in ("数据质量报告", "批次", "数据更新及时性", "逾期", "按时", "四级节点对账"):
        assert word in zh and word not in en, word
    assert "Freshness scoreboard" in en and "Freshness scoreboard" not in zh
    assert '<html lang="en">' in en


def test_every_time_is_in_shanghai_with_its_date_and_none_is_relative(tmp_path: Path) -> None:
    status = make_status(tmp_path)
    for page in (render_page(status, {"written_at": "2026-11-27T16:30:00+00:00"}),
                 render_page(status, {"written_at": "2026-11-27T16:30:00+00:00"}, "en")):
        text = re.sub(r"<[^>]+>", " ", page)
        # batch received 10:00 UTC, reconciliation 12:00 UTC, the page written 16:30 UTC (next day in Shanghai)
        for shown in ("2026-11-27 18:00 (UTC+8)", "2026-11-27 20:00 (UTC+8)", "2026-11-28 00:30 (UTC+8)",
                      "2027-12-12 18:00 (UTC+8)"):
            assert shown in text, shown
        assert "(UTC)" not in text and "2026-11-27T" not in text
        assert not re.search(r"\bago\b|前更新了|分钟前|小时前", text)


def test_who_has_not_submitted_is_listed_with_rates_and_the_overdue_marked(tmp_path: Path) -> None:
    page = render_page(make_status(tmp_path), None)
    section = page[page.index('id="reporting"'):]
    assert "定期报表：未报送单位" in page and "应报 810 个单位，已报 808 个（99.8%）" in section
    assert "福田区" in section and "98.3%" in section and "滨江社区居委会" in section and "已逾期" in section
    assert "无报送义务却已报送（不计入报送率）：440304001099" in section
    rows = parse(section).row_classes
    assert rows.count("late") == 1  # the overdue one only


def test_a_home_without_a_city_owes_no_report_yet(tmp_path: Path) -> None:
    page = render_page(make_status(tmp_path, reporting=()), None, "en")
    assert "No periodic report is owed yet" in page[page.index('id="reporting"'):]
