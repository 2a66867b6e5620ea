"""Reporting obligations: which unit owes which report for which period, when it is due and when
the period locks (issue 13, arts. 12, 18, 28, 32).

A contract that is a periodic report declares it in a `reporting:` block (schemas/contract.py):
the tier of the reporting units, the period (month, quarter or year), the days after the period's
last day until it is due and until it locks, the rule deciding which units owe it, and the fields
that place a row in a period. Each obligation is a row derived from the divisions *in force in
that period* (a `UnitSpan` per unit: the first and last day it existed), never from today's tree:
a community closed in May owes nothing for the year's second half, one opened in May owes the
second quarter only under a rule that counts it.

Rules (the one a contract declares is recorded on every obligation):
  exists_on_period_end  the unit exists on the period's last day (the default: DHIS2 counts a
                        unit open on any day, which lets a unit closed mid-period stay expected);
  exists_whole_period   the unit exists on every day of the period;
  exists_any_day        the unit exists on at least one day of the period.

Deadlines are days in Asia/Shanghai: a report received at 23:59:59 on the due day (Shanghai) is on
time, at 00:00:00 the next day it is late. A reporting rate counts the obligations that have a
submission over all obligations, so it can never exceed 100 %: a submission for which no
obligation exists (a closed unit, a unit of another tier) is listed apart, never counted.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from schemas.divisions import TIERS, Registry, Tier, tier_of
from schemas.errors import TerminalError
from schemas.i18n import SHANGHAI, NaiveTimeZoneError
from schemas.sql import quote_ident

PeriodKind = Literal["month", "quarter", "year"]
Rule = Literal["exists_on_period_end", "exists_whole_period", "exists_any_day"]
PERIOD_KINDS: tuple[str, ...] = get_args(PeriodKind)
RULES: tuple[str, ...] = get_args(Rule)
# the day a shipped division vintage comes into force (it stays in force until the next one)
VINTAGE_IN_FORCE = {2020: dt.date(2020, 1, 1)}
_PERIOD = re.compile(r"^(?P<year>\d{4})(?:Q(?P<quarter>[1-4])|-(?P<month>0[1-9]|1[0-2]))?$")
_DEPARTMENT = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
MAX_SPAN_DAYS = 3660  # a lock at most about ten years after a period: a larger one is a typo


class ReportingError(TerminalError):
    """A reporting period is not written as 2021, 2021Q2 or 2021-05, not of the report's kind, or names no report."""


@dataclass(frozen=True, order=True)
class Period:
    """One reporting period: its first and last day (both inclusive), its kind and its label."""

    start: dt.date
    end: dt.date
    kind: PeriodKind
    label: str

    @property
    def part(self) -> int | None:
        """The quarter (1-4) or month (1-12) of the period; None for a year."""
        return part_of(self.kind, self.start)

    def previous(self) -> Period:
        """The period of the same kind just before this one."""
        return period_containing(self.kind, self.start - dt.timedelta(days=1))

    def days(self) -> Iterable[dt.date]:
        day = self.start
        while day <= self.end:
            yield day
            day += dt.timedelta(days=1)


def parse_period(text: str) -> Period:
    """A period from its label: `2021` (year), `2021Q2` (quarter), `2021-05` (month)."""
    found = _PERIOD.match(text.strip()) if isinstance(text, str) else None
    if found is None:
        raise ReportingError(f"period {text!r} is not a year, quarter or month: write it as 2021, 2021Q2 or 2021-05")
    year = int(found["year"])
    if found["quarter"]:
        q = int(found["quarter"])
        start, end_month, kind = dt.date(year, 3 * q - 2, 1), 3 * q, "quarter"
    elif found["month"]:
        m = int(found["month"])
        start, end_month, kind = dt.date(year, m, 1), m, "month"
    else:
        start, end_month, kind = dt.date(year, 1, 1), 12, "year"
    end = dt.date(year, end_month, calendar.monthrange(year, end_month)[1])
    return Period(start, end, kind, text.strip())  # type: ignore[arg-type]


def period_of(kind: PeriodKind, year: int, part: int | None = None) -> Period:
    """The period of a row's fields: a year, and its quarter or month (None for a yearly report)."""
    if kind == "year":
        return parse_period(f"{year:04d}")
    if part is None:
        raise ReportingError(f"a {kind}ly report names its {kind}: the row has none")
    return parse_period(f"{year:04d}Q{part}" if kind == "quarter" else f"{year:04d}-{part:02d}")


def part_of(kind: PeriodKind, day: dt.date) -> int | None:
    """The quarter or month of a day, for a period of that kind (None for a year)."""
    return None if kind == "year" else (day.month + 2) // 3 if kind == "quarter" else day.month


def period_containing(kind: PeriodKind, day: dt.date) -> Period:
    """The period of that kind holding the day."""
    return period_of(kind, day.year, part_of(kind, day))


@dataclass(frozen=True)
class ReportingRule:
    """A contract's `reporting:` block: who owes the report, for which periods, by when."""

    unit_tier: Tier
    period: PeriodKind
    due_days: int  # days after the period's last day: the due day (Asia/Shanghai)
    lock_days: int  # days after the period's last day: from the next day, the period is locked
    obligated: Rule
    year_field: str  # the row's fields that place it in a period
    part_field: str | None  # the quarter or month field; None for a yearly report
    rollup_by: tuple[str, ...] = ()  # the fields each hop's rollup groups by, beside the period
    subscribers: tuple[str, ...] = ()  # departments that receive the rollups as a delivery (their outbox)

    def placed_in(self, period: Period) -> tuple[str, list[int]]:
        """The SQL condition (and its parameters) of the rows this report places in the period."""
        where, params = f"{quote_ident(self.year_field)} = ?", [period.start.year]
        if self.part_field is not None and period.part is not None:
            where += f" AND {quote_ident(self.part_field)} = ?"
            params.append(period.part)
        return where, params

    def due(self, period: Period) -> dt.date:
        return period.end + dt.timedelta(days=self.due_days)

    def lock(self, period: Period) -> dt.date:
        return period.end + dt.timedelta(days=self.lock_days)


def rule_from_mapping(raw: Any, fields: Mapping[str, str], where: str) -> ReportingRule:
    """A `reporting:` block, checked; `fields` maps the contract's field names to their types.
    Errors are `(problem, fix)` messages for the contract loader (ValueError)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: must be a mapping; see schemas/datasets/community_expenditures.yaml")
    known = {"unit_tier", "period", "due_days", "lock_days", "obligated", "period_fields", "rollup_by", "subscribers"}
    if set(raw) - known:
        raise ValueError(f"{where}: unknown keys {sorted(set(raw) - known)}; use only {sorted(known)}")
    if raw.get("unit_tier") not in TIERS:
        raise ValueError(f"{where}.unit_tier: {raw.get('unit_tier')!r} is not a tier; use one of {list(TIERS)}")
    if raw.get("period") not in PERIOD_KINDS:
        raise ValueError(f"{where}.period: {raw.get('period')!r} is not one of {list(PERIOD_KINDS)}")
    obligated = raw.get("obligated", "exists_on_period_end")
    if obligated not in RULES:
        raise ValueError(f"{where}.obligated: {obligated!r} is not one of {list(RULES)}")
    due, lock = raw.get("due_days"), raw.get("lock_days")
    if not (isinstance(due, int) and isinstance(lock, int)) or isinstance(due, bool) or isinstance(lock, bool) \
            or not 0 <= due <= lock <= MAX_SPAN_DAYS:
        raise ValueError(f"{where}: due_days and lock_days must be whole days with 0 <= due_days <= lock_days "
                         f"<= {MAX_SPAN_DAYS} (got {due!r}, {lock!r})")
    placed = raw.get("period_fields") or {}
    year_field = placed.get("year") if isinstance(placed, dict) else None
    part_field = placed.get(raw["period"]) if isinstance(placed, dict) and raw["period"] != "year" else None
    wanted = [("year", year_field)] + ([(raw["period"], part_field)] if raw["period"] != "year" else [])
    for role, name in wanted:
        if fields.get(str(name)) != "integer":
            raise ValueError(f"{where}.period_fields.{role}: {name!r} is not an integer field of the contract; "
                             f"name the field holding the row's {role}")
    rollup_by = raw.get("rollup_by") or []
    if not isinstance(rollup_by, list) or any(fields.get(str(f)) not in ("string", "integer") for f in rollup_by):
        raise ValueError(f"{where}.rollup_by: {rollup_by!r} must list text or integer fields of the contract")
    subscribers = raw.get("subscribers") or []
    if not isinstance(subscribers, list) or any(not isinstance(d, str) or not _DEPARTMENT.match(d)
                                                for d in subscribers):
        raise ValueError(f"{where}.subscribers: {subscribers!r} must list department names (lower-case letters, "
                         "digits and _, such as finance)")
    return ReportingRule(raw["unit_tier"], raw["period"], due, lock, obligated, str(year_field),
                         str(part_field) if part_field else None, tuple(map(str, rollup_by)), tuple(subscribers))


@dataclass(frozen=True)
class UnitSpan:
    """One unit's life: the first and the last day it existed (None: open-ended)."""

    code: str
    opened: dt.date | None = None
    closed: dt.date | None = None  # the last day it existed

    def exists_on(self, day: dt.date) -> bool:
        return (self.opened is None or self.opened <= day) and (self.closed is None or day <= self.closed)


def spans_of(registry: Registry, closed: Mapping[str, dt.date] | None = None) -> list[UnitSpan]:
    """Every unit of a shipped vintage as a span: in force from the vintage's day, open-ended unless
    `closed` gives its last day (a division event recorded since)."""
    opened = VINTAGE_IN_FORCE.get(registry.vintage, dt.date(registry.vintage, 1, 1))
    closed = closed or {}
    return [UnitSpan(d.code, opened, closed.get(d.code)) for d in registry.walk()]


def owes(rule: Rule, spans: list[UnitSpan], period: Period) -> bool:
    """Whether a unit with these spans (one code may close and reopen) owes the period's report."""
    if rule == "exists_on_period_end":
        return any(s.exists_on(period.end) for s in spans)
    if rule == "exists_any_day":
        return any((s.opened is None or s.opened <= period.end) and (s.closed is None or s.closed >= period.start)
                   for s in spans)
    return all(any(s.exists_on(day) for s in spans) for day in period.days())


@dataclass(frozen=True, order=True)
class Obligation:
    """One expected report: the row "who has not submitted" is computed against."""

    report: str
    period: str
    unit: str
    tier: Tier
    vintage: int
    rule: Rule
    due: dt.date
    lock: dt.date

    def to_dict(self) -> dict[str, Any]:
        return {"report": self.report, "period": self.period, "unit": self.unit, "tier": self.tier,
                "vintage": self.vintage, "rule": self.rule, "due": self.due.isoformat(),
                "lock": self.lock.isoformat()}


def obligations(report: str, rule: ReportingRule, period: Period, spans: Iterable[UnitSpan],
                vintage: int) -> list[Obligation]:
    """The obligations of one report for one period: one per unit of the rule's tier that owes it
    (a code with several spans is one unit, counted once), in code order."""
    if period.kind != rule.period:
        raise ReportingError(f"{report} is reported per {rule.period}, not per {period.kind}: "
                          f"ask for a {rule.period} such as {_example(rule.period)}")
    by_code: dict[str, list[UnitSpan]] = {}
    for span in spans:
        if tier_of(span.code) == rule.unit_tier:
            by_code.setdefault(span.code, []).append(span)
    return [Obligation(report, period.label, code, rule.unit_tier, vintage, rule.obligated, rule.due(period),
                       rule.lock(period))
            for code, unit_spans in sorted(by_code.items()) if owes(rule.obligated, unit_spans, period)]


def _example(kind: str) -> str:
    return {"year": "2021", "quarter": "2021Q2", "month": "2021-05"}[kind]


def is_late(received: dt.datetime, due: dt.date) -> bool:
    """Whether a report received at `received` (an aware time) is after its due day in Shanghai."""
    if received.tzinfo is None or received.utcoffset() is None:
        raise NaiveTimeZoneError("is_late needs an aware time (the receipt's, in UTC or with its offset)")
    return received.astimezone(SHANGHAI).date() > due


def is_locked(now: dt.datetime, lock: dt.date) -> bool:
    """Whether the period is locked at `now`: from 00:00 (Shanghai) the day after its lock day."""
    return is_late(now, lock)


@dataclass(frozen=True)
class Standing:
    """Who has and has not submitted, against the obligations: the rate counts only obligations."""

    expected: tuple[Obligation, ...]
    missing: tuple[Obligation, ...]
    unexpected: tuple[str, ...]  # units that submitted without an obligation (closed, other tier)

    @property
    def submitted(self) -> int:
        return len(self.expected) - len(self.missing)

    @property
    def rate(self) -> float | None:
        """Submitted obligations over obligations (None when nothing is expected)."""
        return self.submitted / len(self.expected) if self.expected else None


def standing(expected: Iterable[Obligation], submitted_units: Iterable[str]) -> Standing:
    """Compare the obligations of one report and period with the units that submitted it."""
    expected = tuple(sorted(expected))
    units = set(submitted_units)
    owed = {o.unit for o in expected}
    return Standing(expected, tuple(o for o in expected if o.unit not in units), tuple(sorted(units - owed)))
