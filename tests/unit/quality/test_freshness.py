"""Freshness: lateness per cadence, what counts as updated, community rows, the sentence for people."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from quality.freshness import ALLOWANCE, BatchSeen, NaiveTimeError, Subject, is_late, rate, scoreboard
from schemas.contract import CADENCES

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
HEALTH = Subject("health", "health_stations", "health_stations", "weekly")


def batch(days_ago: float, status: str = "applied", feed: str = "health_stations", community: str | None = None,
          batch_id: str | None = None) -> BatchSeen:
    """A batch received `days_ago` days before NOW."""
    received = NOW - dt.timedelta(days=days_ago)
    return BatchSeen(batch_id or f"b{days_ago}-{status}-{community}", feed, received, status, community)  # type: ignore[arg-type]


def test_every_cadence_has_an_allowance() -> None:
    assert set(ALLOWANCE) == set(CADENCES)


@pytest.mark.parametrize("cadence", CADENCES, ids=str)
def test_late_just_after_period_plus_grace(cadence: str) -> None:
    period, grace = ALLOWANCE[cadence]  # type: ignore[index]
    deadline = NOW - period - grace
    assert not is_late(cadence, deadline, NOW)  # type: ignore[arg-type]
    assert is_late(cadence, deadline - dt.timedelta(minutes=1), NOW)  # type: ignore[arg-type]
    assert not is_late(cadence, NOW - period, NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(("cadence", "age", "late"), [
    ("hourly", dt.timedelta(minutes=89), False), ("hourly", dt.timedelta(minutes=91), True),
    ("daily", dt.timedelta(hours=29), False), ("daily", dt.timedelta(hours=31), True),
    ("weekly", dt.timedelta(days=7, hours=23), False), ("weekly", dt.timedelta(days=8, hours=1), True),
    ("monthly", dt.timedelta(days=33), False), ("monthly", dt.timedelta(days=35), True),
    ("quarterly", dt.timedelta(days=98), False), ("quarterly", dt.timedelta(days=100), True),
    ("yearly", dt.timedelta(days=379), False), ("yearly", dt.timedelta(days=381), True),
], ids=lambda v: str(v))
def test_lateness_by_cadence(cadence: str, age: dt.timedelta, late: bool) -> None:
    subject = Subject("dept", "ds", "feed", cadence)  # type: ignore[arg-type]
    row = rate(subject, [BatchSeen("b1", "feed", NOW - age, "applied")], NOW)
    assert row.late is late
    assert (row.late_by is not None) is late


def test_never_updated_is_late_with_a_sentence() -> None:
    row = rate(HEALTH, [], NOW)
    assert row.late and row.last_updated is None and row.last_received is None and row.late_by is None
    assert "never updated" in row.sentence and "no batch received" in row.sentence


def test_refused_batches_do_not_count_as_updates() -> None:
    row = rate(HEALTH, [batch(20), batch(1, "refused")], NOW)
    assert row.last_updated == NOW - dt.timedelta(days=20)
    assert row.last_received == NOW - dt.timedelta(days=1)
    assert row.last_status == "refused"
    assert row.late
    assert row.late_by == dt.timedelta(days=20) - dt.timedelta(days=8)
    assert "late by 12 days" in row.sentence
    assert "refused by the quality gate" in row.sentence


def test_only_refused_batches_means_never_updated() -> None:
    row = rate(HEALTH, [batch(2, "refused"), batch(1, "pending")], NOW)
    assert row.late and row.last_updated is None and row.last_status == "pending"
    assert "2 batch(es) received, none applied" in row.sentence
    assert "waiting to be checked" in row.sentence


def test_on_time_sentence_names_the_next_due_date() -> None:
    row = rate(HEALTH, [batch(7), batch(2)], NOW)
    assert not row.late and row.last_status == "applied"
    assert row.due_by == NOW - dt.timedelta(days=2) + dt.timedelta(days=8)
    assert row.sentence.startswith("health_stations from health: last updated 2026-11-25 20:00 (UTC+8), 2 days ago")
    assert "on time; next update due by 2026-12-03 20:00 (UTC+8)" in row.sentence


def test_community_rows_only_see_their_own_batches() -> None:
    code = "440304001001"
    community = Subject(f"community:{code}", "community_expenditures", "community_expenditures", "quarterly",
                        code, ("ws-fu-1",))
    department = Subject("civil_affairs", "community_expenditures", "community_expenditures", "quarterly")
    batches = [batch(200, feed="community_expenditures", community=code),
               batch(3, feed="community_expenditures", community="440304001002"),
               batch(10, feed="community_expenditures")]
    by_community, by_department = scoreboard([community, department], batches, NOW)
    assert by_community.late and by_community.last_updated == NOW - dt.timedelta(days=200)
    assert "community 440304001001 (sender ws-fu-1)" in by_community.sentence
    assert not by_department.late and by_department.last_updated == NOW - dt.timedelta(days=10)


def test_other_feeds_are_ignored() -> None:
    assert rate(HEALTH, [batch(1, feed="other_feed")], NOW).last_received is None


def test_to_dict_is_json() -> None:
    row = rate(HEALTH, [batch(20)], NOW).to_dict()
    assert json.loads(json.dumps(row)) == row
    assert row["last_updated"] == "2026-11-07T12:00:00+00:00"
    assert row["late_by_seconds"] == 12 * 86400
    assert row["late"] is True and row["cadence"] == "weekly"


def test_naive_now_is_refused() -> None:
    with pytest.raises(NaiveTimeError, match="time zone"):
        scoreboard([HEALTH], [], dt.datetime(2026, 1, 1))  # noqa: DTZ001 - the naive time is the point
