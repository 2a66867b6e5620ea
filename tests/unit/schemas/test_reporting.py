"""Reporting obligations (schemas/reporting.py): periods, due and lock days in Asia/Shanghai, the
declared rules over units opening and closing, and rates that can never exceed 100 %."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.contract import contract_from_mapping, load_contracts
from schemas.divisions import load_registry
from schemas.errors import ContractError
from schemas.i18n import NaiveTimeZoneError
from schemas.reporting import (
    RULES,
    ReportingError,
    ReportingRule,
    UnitSpan,
    is_late,
    is_locked,
    obligations,
    parse_period,
    period_containing,
    period_of,
    spans_of,
    standing,
)

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
COMMUNITIES = ("440304001001", "440304001002", "440304001003", "440304002001")
QUARTERLY = ReportingRule("community", "quarter", 15, 45, "exists_on_period_end", "year", "quarter")


def test_periods_are_years_quarters_and_months_with_their_last_day() -> None:
    q2 = parse_period("2021Q2")
    assert (q2.start, q2.end, q2.kind) == (dt.date(2021, 4, 1), dt.date(2021, 6, 30), "quarter")
    assert parse_period("2024-02").end == dt.date(2024, 2, 29)  # a leap year
    assert parse_period("2021").end == dt.date(2021, 12, 31)
    assert period_of("quarter", 2021, 2) == q2 and period_of("month", 2021, 5).label == "2021-05"
    assert (q2.part, q2.previous().label, q2.previous().previous().label) == (2, "2021Q1", "2020Q4")
    assert (parse_period("2021-01").previous().label, parse_period("2021").previous().label) == ("2020-12", "2020")
    assert period_containing("quarter", dt.date(2021, 9, 30)).label == "2021Q3" and parse_period("2021").part is None
    for bad in ("2021Q5", "21Q2", "2021-13", "2021 Q2", "Q2"):
        with pytest.raises(ReportingError, match="write it as 2021, 2021Q2 or 2021-05"):
            parse_period(bad)


def test_the_due_day_ends_at_midnight_in_shanghai() -> None:
    due = QUARTERLY.due(parse_period("2021Q2"))
    assert due == dt.date(2021, 7, 15)
    assert not is_late(dt.datetime(2021, 7, 15, 23, 59, 59, tzinfo=SHANGHAI), due)
    assert is_late(dt.datetime(2021, 7, 16, 0, 0, 0, tzinfo=SHANGHAI), due)
    assert not is_late(dt.datetime(2021, 7, 15, 15, 59, 59, tzinfo=dt.UTC), due)  # 23:59:59 in Shanghai
    assert is_late(dt.datetime(2021, 7, 15, 16, 0, 0, tzinfo=dt.UTC), due)
    assert is_locked(dt.datetime(2021, 8, 15, 0, 0, tzinfo=SHANGHAI), QUARTERLY.lock(parse_period("2021Q2")))
    with pytest.raises(NaiveTimeZoneError):
        is_late(dt.datetime(2021, 7, 15, 12, 0), due)  # noqa: DTZ001 - the naive time refused


def test_a_unit_closed_before_the_period_end_owes_nothing_and_its_report_is_not_counted() -> None:
    q2 = parse_period("2021Q2")
    spans = [UnitSpan(COMMUNITIES[0], dt.date(2020, 1, 1)), UnitSpan(COMMUNITIES[1], dt.date(2020, 1, 1),
                                                                    dt.date(2021, 5, 10)),
             UnitSpan(COMMUNITIES[2], dt.date(2021, 5, 11))]
    owed = obligations("community_expenditures", QUARTERLY, q2, spans, 2020)
    assert [o.unit for o in owed] == [COMMUNITIES[0], COMMUNITIES[2]]  # the closed one owes nothing
    found = standing(owed, {COMMUNITIES[0], COMMUNITIES[1]})
    assert [o.unit for o in found.missing] == [COMMUNITIES[2]] and found.unexpected == (COMMUNITIES[1],)
    assert found.rate == 0.5


def test_each_rule_decides_as_declared() -> None:
    q2 = parse_period("2021Q2")
    opened_in_may = [UnitSpan(COMMUNITIES[0], dt.date(2021, 5, 1))]
    closed_in_may = [UnitSpan(COMMUNITIES[1], dt.date(2020, 1, 1), dt.date(2021, 5, 31))]
    decided = {rule: [bool(obligations("r", ReportingRule("community", "quarter", 15, 45, rule, "year", "quarter"),
                                       q2, spans, 2020)) for spans in (opened_in_may, closed_in_may)]
               for rule in RULES}
    assert decided == {"exists_on_period_end": [True, False], "exists_whole_period": [False, False],
                       "exists_any_day": [True, True]}


def test_the_shipped_vintage_gives_every_community_one_obligation() -> None:
    registry = load_registry()
    owed = obligations("community_expenditures", QUARTERLY, parse_period("2021Q2"), spans_of(registry), 2020)
    assert len(owed) == len(registry.by_tier("community")) == len({o.unit for o in owed})
    assert {(o.tier, o.vintage, o.due, o.lock) for o in owed} == {("community", 2020, dt.date(2021, 7, 15),
                                                                   dt.date(2021, 8, 14))}
    with pytest.raises(ReportingError, match="reported per quarter, not per month"):
        obligations("community_expenditures", QUARTERLY, parse_period("2021-05"), spans_of(registry), 2020)


def test_the_expenditure_contract_declares_its_report() -> None:
    rule = load_contracts()["community_expenditures"].reporting
    assert rule == ReportingRule("community", "quarter", 15, 45, "exists_on_period_end", "year", "quarter",
                                 ("category",), ("finance",))


@pytest.mark.parametrize(("block", "message"), [
    ({"unit_tier": "street", "period": "quarter", "due_days": 15, "lock_days": 45,
      "period_fields": {"year": "year", "quarter": "quarter"}}, "is not the anchor's tier"),
    ({"unit_tier": "community", "period": "week", "due_days": 15, "lock_days": 45}, "is not one of"),
    ({"unit_tier": "community", "period": "quarter", "due_days": 50, "lock_days": 45,
      "period_fields": {"year": "year", "quarter": "quarter"}}, "due_days <= lock_days"),
    ({"unit_tier": "community", "period": "quarter", "due_days": 15, "lock_days": 45,
      "period_fields": {"year": "year", "quarter": "note"}}, "period_fields.quarter: 'note' is not an integer"),
    ({"unit_tier": "community", "period": "quarter", "due_days": 15, "lock_days": 45, "owner": "x"},
     "unknown keys"),
    ({"unit_tier": "community", "period": "quarter", "due_days": 15, "lock_days": 45,
      "period_fields": {"year": "year", "quarter": "quarter"}, "rollup_by": ["nope"]}, "rollup_by"),
    ({"unit_tier": "community", "period": "quarter", "due_days": 15, "lock_days": 45,
      "period_fields": {"year": "year", "quarter": "quarter"}, "subscribers": ["../finance"]}, "department names"),
])
def test_a_bad_reporting_block_names_its_key_and_the_fix(block: dict[str, object], message: str) -> None:
    raw = {"name": "r", "version": "1.0.0", "owner": "civil_affairs", "anchor": "division_code",
           "anchor_tier": "community", "history": "scd2", "cadence": "quarterly", "reaches": ["city"],
           "primaryKey": ["id"], "reporting": block,
           "fields": [{"name": "id", "type": "string", "title": "编号"},
                      {"name": "division_code", "type": "string", "title": "社区代码"},
                      {"name": "year", "type": "integer", "title": "年度"},
                      {"name": "quarter", "type": "integer", "title": "季度"},
                      {"name": "note", "type": "string", "title": "说明"},
                      {"name": "vintage", "type": "integer", "title": "区划年份"}]}
    with pytest.raises(ContractError, match=message):
        contract_from_mapping(raw, "r.yaml")


DAYS = st.integers(min_value=0, max_value=3 * 366)
BASE = dt.date(2020, 1, 1)


@st.composite
def histories(draw: st.DrawFn) -> list[UnitSpan]:
    """Units opening and closing (and some reopening under the same code) around 2021."""
    spans = []
    for code in COMMUNITIES:
        for _ in range(draw(st.integers(min_value=0, max_value=3))):
            opened = BASE + dt.timedelta(days=draw(DAYS))
            closed = draw(st.one_of(st.none(), DAYS.map(lambda d, o=opened: o + dt.timedelta(days=d))))
            spans.append(UnitSpan(code, opened, closed))
    return spans


@settings(max_examples=300, deadline=None)
@given(histories(), st.sampled_from(RULES), st.sampled_from(["2020Q4", "2021Q1", "2021Q2", "2021Q3", "2022Q1"]),
       st.sets(st.sampled_from((*COMMUNITIES, "440304009009"))))
def test_no_history_gives_a_rate_above_100_or_an_obligation_twice(spans: list[UnitSpan], rule: str, label: str,
                                                                  submitted: set[str]) -> None:
    period = parse_period(label)
    declared = ReportingRule("community", "quarter", 15, 45, rule, "year", "quarter")  # type: ignore[arg-type]
    owed = obligations("r", declared, period, spans, 2020)
    assert len({(o.report, o.period, o.unit) for o in owed}) == len(owed)  # never counted twice
    for o in owed:  # every obligation is of a unit that existed in the period
        assert any(s.exists_on(d) for s in spans if s.code == o.unit for d in period.days())
    found = standing(owed, submitted)
    assert found.rate is None or 0.0 <= found.rate <= 1.0
    assert found.submitted + len(found.missing) == len(owed)
    assert set(found.unexpected).isdisjoint({o.unit for o in owed})
