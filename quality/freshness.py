"""Freshness scoreboard: is each department (and community) keeping its datasets current? (art. 25)

Every contract states an update cadence. A subject (a department's feed of a dataset, or one
community's submissions to a push feed) is *late* when the time since its newest applied
batch exceeds the cadence's period plus a grace (`ALLOWANCE`); a subject never updated is late
too. Refused or still pending batches count as received, not as updated.

This module is pure: callers read the feeds, senders, ledger and landing manifests and pass
them in (`civicnet.pipeline.status.freshness` does), so the rules are testable with plain values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from schemas.contract import Cadence
from schemas.errors import TerminalError
from schemas.i18n import format_time

BatchStatus = Literal["applied", "refused", "pending"]
# Dates are shown to people in the city's time (schemas.i18n.format_time).

# cadence -> (period, grace). Late = now - last_updated > period + grace. The grace absorbs a
# department's usual delay (a daily feed landing at 03:00 instead of 00:00, a month of 31 days,
# a quarterly report filed in the first week of the next quarter) without hiding a missed cycle.
ALLOWANCE: dict[Cadence, tuple[dt.timedelta, dt.timedelta]] = {
    "hourly": (dt.timedelta(hours=1), dt.timedelta(minutes=30)),
    "daily": (dt.timedelta(days=1), dt.timedelta(hours=6)),
    "weekly": (dt.timedelta(days=7), dt.timedelta(days=1)),
    "monthly": (dt.timedelta(days=31), dt.timedelta(days=3)),
    "quarterly": (dt.timedelta(days=92), dt.timedelta(days=7)),
    "yearly": (dt.timedelta(days=366), dt.timedelta(days=14)),
}


class NaiveTimeError(TerminalError):
    """A time without a time zone was passed where an aware one is needed."""


@dataclass(frozen=True)
class Subject:
    """Who must keep one dataset current through one feed: a department, or one community."""

    department: str
    dataset: str
    feed: str
    cadence: Cadence
    community: str | None = None  # the community code, for a community's own submissions
    senders: tuple[str, ...] = ()  # the community's registered sender ids


@dataclass(frozen=True)
class BatchSeen:
    """One received batch: when it arrived, from whom, and what the city ledger decided."""

    batch_id: str
    feed: str
    received_at: dt.datetime
    status: BatchStatus
    community: str | None = None


@dataclass(frozen=True)
class FreshnessRow:
    """One line of the scoreboard."""

    department: str
    dataset: str
    feed: str
    community: str | None
    senders: tuple[str, ...]
    cadence: Cadence
    last_updated: dt.datetime | None
    last_received: dt.datetime | None
    last_status: BatchStatus | None
    due_by: dt.datetime | None
    late: bool
    late_by: dt.timedelta | None
    sentence: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: times as ISO 8601 (UTC), durations in whole seconds."""
        def iso(t: dt.datetime | None) -> str | None:
            return None if t is None else t.astimezone(dt.UTC).isoformat(timespec="seconds")

        return {"department": self.department, "dataset": self.dataset, "feed": self.feed,
                "community": self.community, "senders": list(self.senders), "cadence": self.cadence,
                "last_updated": iso(self.last_updated), "last_received": iso(self.last_received),
                "last_status": self.last_status, "due_by": iso(self.due_by), "late": self.late,
                "late_by_seconds": None if self.late_by is None else int(self.late_by.total_seconds()),
                "sentence": self.sentence}


def due_by(cadence: Cadence, last_updated: dt.datetime) -> dt.datetime:
    """The moment after which a subject last updated at `last_updated` is late."""
    period, grace = ALLOWANCE[cadence]
    return last_updated + period + grace


def is_late(cadence: Cadence, last_updated: dt.datetime | None, now: dt.datetime) -> bool:
    """Late: never updated, or more than the cadence's period plus grace since the last update."""
    return last_updated is None or now > due_by(cadence, last_updated)


def human_duration(span: dt.timedelta) -> str:
    """A duration as people say it: '7 days', '1 day 6 h', '3 h 20 min', '12 min'."""
    minutes = max(0, int(span.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        unit = "day" if days == 1 else "days"
        return f"{days} {unit}" + (f" {hours} h" if hours else "")
    if hours:
        return f"{hours} h" + (f" {mins} min" if mins else "")
    return f"{mins} min"


def show_time(t: dt.datetime) -> str:
    """A time for people, in the city's time zone (schemas.i18n.format_time is its one home)."""
    return format_time(t)


def _who(subject: Subject) -> str:
    if subject.community is None:
        return subject.department
    via = f" (sender {', '.join(subject.senders)})" if subject.senders else ""
    return f"community {subject.community}{via}"


def _sentence(subject: Subject, row: FreshnessRow, now: dt.datetime, received: int) -> str:
    who = _who(subject)
    head = f"{subject.dataset} from {who}"
    if row.last_updated is None or row.due_by is None:
        seen = ("no batch received yet" if received == 0
                else f"{received} batch(es) received, none applied")
        text = (f"{head}: never updated ({seen}); cadence {subject.cadence}: late — "
                f"{who} is due to send its first update.")
    else:
        text = (f"{head}: last updated {show_time(row.last_updated)}, "
                f"{human_duration(now - row.last_updated)} ago; cadence {subject.cadence}: ")
        if row.late and row.late_by is not None:
            text += (f"late by {human_duration(row.late_by)} — {who} was due to send an update "
                     f"by {show_time(row.due_by)}.")
        else:
            text += f"on time; next update due by {show_time(row.due_by)}."
    last = row.last_received
    if last is None or (row.last_updated is not None and last <= row.last_updated):
        return text
    if row.last_status == "refused":
        text += (f" The newest batch, received {show_time(last)}, was refused by the quality gate: "
                 "see its rejection report.")
    elif row.last_status == "pending":
        text += f" The newest batch, received {show_time(last)}, is waiting to be checked."
    return text


def rate(subject: Subject, batches: Iterable[BatchSeen], now: dt.datetime) -> FreshnessRow:
    """The scoreboard row of one subject, from every batch seen (others' batches are ignored)."""
    own = sorted((b for b in batches if b.feed == subject.feed and b.community == subject.community),
                 key=lambda b: (b.received_at, b.batch_id))
    applied = [b for b in own if b.status == "applied"]
    last_updated = applied[-1].received_at if applied else None
    due = None if last_updated is None else due_by(subject.cadence, last_updated)
    late = is_late(subject.cadence, last_updated, now)
    row = FreshnessRow(
        department=subject.department, dataset=subject.dataset, feed=subject.feed,
        community=subject.community, senders=subject.senders, cadence=subject.cadence,
        last_updated=last_updated, last_received=own[-1].received_at if own else None,
        last_status=own[-1].status if own else None, due_by=due, late=late,
        late_by=(now - due) if late and due is not None else None, sentence="")
    return replace(row, sentence=_sentence(subject, row, now, len(own)))


def scoreboard(subjects: Sequence[Subject], batches: Sequence[BatchSeen],
               now: dt.datetime | None = None) -> list[FreshnessRow]:
    """One row per subject, in the subjects' order; `now` defaults to the current UTC time."""
    if now is None:
        now = dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        raise NaiveTimeError(f"scoreboard(now={now!r}): the time has no time zone; pass an aware datetime "
                             "such as datetime.now(UTC)")
    return [rate(s, batches, now) for s in subjects]
