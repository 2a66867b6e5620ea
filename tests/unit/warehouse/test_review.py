"""The review of periodic reports (warehouse/review.py): submit → reviewed (street) → accepted
(district) → city; a unit approved only after its children; a correction is a new version that
resets exactly its own ancestor chain and shows each reviewer what changed; locks in Shanghai days,
with exceptions for exactly one unit that lapse on their own day."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.divisions import load_registry, parent_of
from schemas.reporting import ReportingRule, obligations, parse_period, spans_of
from warehouse.review import ReviewBook, ReviewRefusedError

REGISTRY = load_registry()
RULE = ReportingRule("community", "quarter", 15, 45, "exists_on_period_end", "year", "quarter")
REPORT, PERIOD = "expenditure_reports", "2021Q2"
OWED = obligations(REPORT, RULE, parse_period(PERIOD), spans_of(REGISTRY), 2020)
CITY, DISTRICT, STREET = "440300000000", "440304000000", "440304001000"  # 福田, 南园街道
COMMUNITIES = [d.code for d in REGISTRY.children(STREET)]
C1, C2 = COMMUNITIES[0], COMMUNITIES[1]
OTHER_STREET = "440304002000"
SH = dt.timezone(dt.timedelta(hours=8))
T = dt.datetime(2021, 7, 5, 10, tzinfo=SH)


def book() -> ReviewBook:
    return ReviewBook(REGISTRY, OWED)


def submit(b: ReviewBook, unit: str, spent: float, at: dt.datetime = T) -> None:
    b.submit(REPORT, PERIOD, unit, unit, f"站长{unit[-3:]}", at, {"category": "staff", "budget": 100.0, "spent": spent})


def review_street(b: ReviewBook, street: str = STREET) -> None:
    for c in REGISTRY.children(street):
        if b.current(REPORT, PERIOD, c.code) is None:
            submit(b, c.code, 90.0)
        b.approve(REPORT, PERIOD, c.code, street, "街道审核员", T, "核对无误")


def test_a_report_climbs_the_tiers_in_order() -> None:
    b = book()
    assert b.state(REPORT, PERIOD, C1) == "draft"
    submit(b, C1, 90.0)
    assert b.state(REPORT, PERIOD, C1) == "submitted"
    review_street(b)
    assert b.state(REPORT, PERIOD, C1) == "reviewed"
    b.approve(REPORT, PERIOD, STREET, DISTRICT, "区审核员", T, "")
    assert b.state(REPORT, PERIOD, C1) == "accepted"
    for street in REGISTRY.children(DISTRICT):
        if street.code != STREET:
            review_street(b, street.code)
            b.approve(REPORT, PERIOD, street.code, DISTRICT, "区审核员", T, "")
    b.approve(REPORT, PERIOD, DISTRICT, CITY, "市审核员", T, "")
    assert b.state(REPORT, PERIOD, C1) == "city"
    assert [e.kind for e in b.events if e.unit == C1] == ["submit", "approve"]
    assert all(e.person and e.at.tzinfo for e in b.events)


def test_a_unit_is_approved_only_after_all_its_children() -> None:
    b = book()
    submit(b, C1, 90.0)
    b.approve(REPORT, PERIOD, C1, STREET, "街道审核员", T)
    with pytest.raises(ReviewRefusedError, match="only after all its children are: " + C2):
        b.approve(REPORT, PERIOD, STREET, DISTRICT, "区审核员", T)
    with pytest.raises(ReviewRefusedError, match="has not submitted"):
        b.approve(REPORT, PERIOD, C2, STREET, "街道审核员", T)
    with pytest.raises(ReviewRefusedError, match="only its parent"):
        b.approve(REPORT, PERIOD, C1, DISTRICT, "区审核员", T)
    with pytest.raises(ReviewRefusedError, match="submits only its own report"):
        b.submit(REPORT, PERIOD, C2, C1, "站长", T, {"spent": 1})
    assert len(b.events) == 2  # nothing refused was recorded


def test_a_correction_resets_exactly_its_ancestor_chain_and_shows_what_changed() -> None:
    b = book()
    review_street(b)
    b.approve(REPORT, PERIOD, STREET, DISTRICT, "区审核员", T)
    review_street(b, OTHER_STREET)
    b.approve(REPORT, PERIOD, OTHER_STREET, DISTRICT, "区审核员", T)
    submit(b, C1, 95.5, T + dt.timedelta(days=2))  # version 2, after acceptance
    assert [v.version for v in b.versions(REPORT, PERIOD, C1)] == [1, 2]  # both kept
    assert b.state(REPORT, PERIOD, C1) == "changed"
    assert b.changes(REPORT, PERIOD, C1) == {"spent": (90.0, 95.5)}
    assert b.approval_state(REPORT, PERIOD, STREET) == "changed"
    assert b.approval_state(REPORT, PERIOD, OTHER_STREET) == "approved"  # another street: untouched
    assert b.state(REPORT, PERIOD, C2) == "reviewed"  # a sibling keeps its own review
    b.approve(REPORT, PERIOD, C1, STREET, "街道审核员", T + dt.timedelta(days=3), "更正已核")
    assert b.approved_version(REPORT, PERIOD, C1).version == 2 and b.changes(REPORT, PERIOD, C1) == {}
    b.approve(REPORT, PERIOD, STREET, DISTRICT, "区审核员", T + dt.timedelta(days=3))
    assert b.state(REPORT, PERIOD, C1) == b.state(REPORT, PERIOD, C2) == "accepted"


def test_the_period_locks_after_its_lock_day_in_shanghai_and_an_exception_opens_one_unit() -> None:
    b = book()
    lock = OWED[0].lock  # 2021-08-14
    submit(b, C1, 90.0, dt.datetime(lock.year, lock.month, lock.day, 23, 59, 59, tzinfo=SH))  # still open
    with pytest.raises(ReviewRefusedError, match="is locked since 2021-08-15"):
        submit(b, C2, 90.0, dt.datetime(2021, 8, 15, 0, 0, 0, tzinfo=SH))
    with pytest.raises(ReviewRefusedError, match="only the city"):
        b.open_lock(REPORT, PERIOD, C2, STREET, "街道", T, dt.date(2021, 9, 1), "补报")
    b.open_lock(REPORT, PERIOD, C2, CITY, "市审核员", T, dt.date(2021, 9, 1), "停电补报")
    submit(b, C2, 90.0, dt.datetime(2021, 9, 1, 23, 0, tzinfo=SH))  # inside the exception
    with pytest.raises(ReviewRefusedError, match="is locked"):
        submit(b, COMMUNITIES[2], 90.0, dt.datetime(2021, 8, 20, tzinfo=SH))  # the exception is C2's only
    with pytest.raises(ReviewRefusedError, match="is locked"):
        submit(b, C2, 91.0, dt.datetime(2021, 9, 2, 0, 0, tzinfo=SH))  # lapsed on its own day


def test_the_book_replays_from_its_events() -> None:
    b = book()
    review_street(b)
    submit(b, C1, 99.0)
    again = ReviewBook(REGISTRY, OWED, b.events)
    assert [again.state(REPORT, PERIOD, c) for c in COMMUNITIES] == [b.state(REPORT, PERIOD, c) for c in COMMUNITIES]
    assert again.changes(REPORT, PERIOD, C1) == b.changes(REPORT, PERIOD, C1)


ACTIONS = st.lists(st.tuples(st.sampled_from(["submit", "review", "accept"]), st.sampled_from(COMMUNITIES[:4]),
                             st.integers(min_value=0, max_value=3)), max_size=25)


@settings(max_examples=150, deadline=None)
@given(ACTIONS)
def test_no_history_touches_a_sibling_or_approves_before_the_children(actions: list[tuple[str, str, int]]) -> None:
    b = book()
    for c in COMMUNITIES[4:]:  # the street's other communities: reviewed once, never touched again
        submit(b, c, 90.0)
        b.approve(REPORT, PERIOD, c, STREET, "审核员", T)
    for action, unit, amount in actions:
        before = {c: b.state(REPORT, PERIOD, c) for c in COMMUNITIES if c != unit}
        try:
            if action == "submit":
                submit(b, unit, 80.0 + amount)
            elif action == "review":
                b.approve(REPORT, PERIOD, unit, STREET, "审核员", T)
            else:
                b.approve(REPORT, PERIOD, STREET, DISTRICT, "审核员", T)
        except ReviewRefusedError:
            continue
        if action == "submit":  # the sibling's own review stands; only the street level may be lost
            after = {c: b.state(REPORT, PERIOD, c) for c in before}
            assert all(after[c] == before[c] or (before[c], after[c]) == ("accepted", "reviewed") for c in before)
        if b.approval_state(REPORT, PERIOD, STREET) == "approved":
            assert all(b.approval_state(REPORT, PERIOD, c) == "approved" for c in COMMUNITIES)
    for c in COMMUNITIES:
        versions = [v.version for v in b.versions(REPORT, PERIOD, c)]
        assert versions == list(range(1, len(versions) + 1))
        assert parent_of(c) == STREET


def test_the_same_measure_at_a_second_grain_is_refused_never_summed() -> None:
    monthly = ReportingRule("community", "month", 15, 45, "exists_on_period_end", "year", "month")
    may = obligations(REPORT, monthly, parse_period("2021-05"), spans_of(REGISTRY), 2020)
    july = obligations(REPORT, monthly, parse_period("2021-07"), spans_of(REGISTRY), 2020)
    b = ReviewBook(REGISTRY, [*OWED, *may, *july])
    submit(b, C1, 90.0)  # 2021Q2
    with pytest.raises(ReviewRefusedError, match=r"at a second grain \(2021-05\) is refused, never summed"):
        b.submit(REPORT, "2021-05", C1, C1, "站长", T, {"spent": 30.0})
    b.submit(REPORT, "2021-07", C1, C1, "站长", dt.datetime(2021, 8, 1, tzinfo=SH), {"spent": 30.0})  # no overlap
    b.submit(REPORT, "2021-05", C2, C2, "站长", T, {"spent": 30.0})  # another unit: its own grain
    assert [e.period for e in b.events if e.unit == C1] == ["2021Q2", "2021-07"]
