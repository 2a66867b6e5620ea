"""The review of periodic reports up the Shenzhen tiers (issue 13, item 4), as an append-only book
of events from which every state is derived.

A community *submits* a version of its report for a period. Its street office *reviews* it
(approves the community), the district *accepts* the street (approves the street: only once every
community of the street that owes the report is reviewed), and the city approves the district
(only once every street of it is accepted). A unit is approved only after all its children are,
as DHIS2 approves organisation units; unlike DHIS2, a correction needs no manual unapprove
cascade:

- A submission is an immutable version (1, 2, ...). A correction after any approval is the next
  version, never an overwrite. It moves exactly the approvals on its own ancestor chain (the
  community's, its street's, its district's) to "changed since approval". It touches no sibling.
  Each reviewer then sees the field-level difference between the version they approved and the
  current one (`changes`).
- A period locks after its lock day (Asia/Shanghai, schemas/reporting.py). After that, no version
  is accepted. The one exception is a lock exception: it opens exactly one (report, period, unit)
  and lapses on its own day.
- The same measure reported at two grains for one unit (a month and the quarter holding it) is
  refused, never summed.
- Every state change is an event with who, when and why. The book refuses, with the reason and the
  fix, an event that is not allowed: a unit submitting for another, an approver who is not the
  unit's parent, an approval before the children's, a submission to a locked period.

The states of a community's report, in order: draft (no version), submitted, reviewed (its
street approved it), accepted (its district approved its street), city (the city approved its
district); "changed" when a newer version came after an approval that is still waiting to be
given again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from schemas.divisions import Registry, parent_of, tier_of
from schemas.errors import TerminalError
from schemas.reporting import Obligation, is_late, parse_period

EventKind = Literal["submit", "approve", "lock_exception"]
State = Literal["draft", "submitted", "reviewed", "accepted", "city", "changed"]
# the state of a community's report once each level above it has approved its chain
_LEVEL_STATE: dict[str, State] = {"community": "reviewed", "street": "accepted", "district": "city"}


class ReviewRefusedError(TerminalError):
    """An event the review rules do not allow; nothing was recorded."""


@dataclass(frozen=True)
class Event:
    """One entry of the book: who (a division code, and the person), when, why, and what."""

    kind: EventKind
    report: str
    period: str
    unit: str  # the unit the event is about: the submitter, the unit approved, the unit given an exception
    actor: str  # the division acting: the unit itself (submit), its parent (approve), the city (exception)
    person: str
    at: dt.datetime
    why: str = ""
    version: int | None = None  # submit: the version made; approve: the version of the chain approved
    values: Mapping[str, Any] = field(default_factory=dict)  # submit: the report's fields
    until: dt.date | None = None  # lock_exception: its last day (Asia/Shanghai)


@dataclass
class _Unit:
    versions: list[Event] = field(default_factory=list)
    approved: Event | None = None  # the approval given to this unit, if not reset since
    reset: bool = False  # an approval was given and a newer version came below it


class ReviewBook:
    """The review state of every (report, period) for the units of a registry, from its events."""

    def __init__(self, registry: Registry, obligations: Iterable[Obligation], events: Iterable[Event] = ()) -> None:
        self.registry = registry
        self.owed = {(o.report, o.period, o.unit): o for o in obligations}
        self._owing: dict[tuple[str, str], set[str]] = {}  # (report, period) → units, and each ancestor of one
        for o in self.owed.values():
            units = self._owing.setdefault((o.report, o.period), set())
            units.update([o.unit, *self._ancestors_below_city(o.unit)])
        self.events: list[Event] = []
        self._units: dict[tuple[str, str, str], _Unit] = {}
        self._exceptions: dict[tuple[str, str, str], Event] = {}
        for event in events:
            self._record(event)

    # -- what a reviewer reads --------------------------------------------------------------
    def state(self, report: str, period: str, unit: str) -> State:
        """The state of a community's report, as its station and every reviewer see it."""
        entry = self._units.get((report, period, unit))
        if entry is None or not entry.versions:
            return "draft"
        if entry.approved is None:
            return "changed" if entry.reset else "submitted"
        state: State = _LEVEL_STATE["community"]
        for code in self._ancestors_below_city(unit):  # a sibling's correction resets these, not this unit
            if self._approval(report, period, code) is None:
                return state
            state = _LEVEL_STATE[tier_of(code)]
        return state

    def approval_state(self, report: str, period: str, unit: str) -> Literal["approved", "changed", "waiting"]:
        """A unit's own approval: given, reset by a newer version below it ("changed since
        approval"), or not given yet."""
        node = self._units.get((report, period, unit))
        if node is not None and node.approved is not None:
            return "approved"
        return "changed" if node is not None and node.reset else "waiting"

    def current(self, report: str, period: str, unit: str) -> Event | None:
        """The latest version a unit submitted, if any."""
        entry = self._units.get((report, period, unit))
        return entry.versions[-1] if entry and entry.versions else None

    def versions(self, report: str, period: str, unit: str) -> list[Event]:
        entry = self._units.get((report, period, unit))
        return list(entry.versions) if entry else []

    def approved_version(self, report: str, period: str, unit: str) -> Event | None:
        """The version of the community's report its street last approved (None if never)."""
        entry = self._units.get((report, period, unit))
        if entry is None or entry.approved is None:
            return self._last_approved_before_reset(report, period, unit)
        return next(v for v in entry.versions if v.version == entry.approved.version)

    def changes(self, report: str, period: str, unit: str) -> dict[str, tuple[Any, Any]]:
        """Field → (as approved, as now) for every field the current version changed since the
        approved one (empty when nothing changed or nothing was approved)."""
        before, now = self.approved_version(report, period, unit), self.current(report, period, unit)
        if before is None or now is None or before.version == now.version:
            return {}
        names = sorted(set(before.values) | set(now.values))
        return {n: (before.values.get(n), now.values.get(n)) for n in names
                if before.values.get(n) != now.values.get(n)}

    # -- what units do ------------------------------------------------------------------------
    def submit(self, report: str, period: str, unit: str, actor: str, person: str, at: dt.datetime,
               values: Mapping[str, Any], why: str = "") -> Event:
        """A new version of `unit`'s report (version 1, or the next after a correction)."""
        version = len(self.versions(report, period, unit)) + 1
        return self._record(Event("submit", report, period, unit, actor, person, at, why, version, dict(values)))

    def approve(self, report: str, period: str, unit: str, actor: str, person: str, at: dt.datetime,
                why: str = "") -> Event:
        """`actor` (the unit's parent) approves `unit`: a community's current version, or a street or
        district whose children are all approved."""
        current = self.current(report, period, unit) if tier_of(unit) == "community" else None
        version = current.version if current is not None else None
        return self._record(Event("approve", report, period, unit, actor, person, at, why, version))

    def open_lock(self, report: str, period: str, unit: str, actor: str, person: str, at: dt.datetime,
                  until: dt.date, why: str) -> Event:
        """A lock exception: `unit` may submit a version of this one report and period until `until`."""
        return self._record(Event("lock_exception", report, period, unit, actor, person, at, why, until=until))

    # -- the rules ------------------------------------------------------------------------------
    def _record(self, event: Event) -> Event:
        if event.at.tzinfo is None:
            raise ReviewRefusedError("an event needs an aware time (UTC or with its offset)")
        check = {"submit": self._check_submit, "approve": self._check_approve,
                 "lock_exception": self._check_exception}[event.kind]
        check(event)
        key = (event.report, event.period, event.unit)
        if event.kind == "lock_exception":
            self._exceptions[key] = event
        elif event.kind == "submit":
            entry = self._units.setdefault(key, _Unit())
            entry.versions.append(event)
            for code in [event.unit, *self._ancestors_below_city(event.unit)]:
                node = self._units.setdefault((event.report, event.period, code), _Unit())
                if node.approved is not None:
                    node.approved, node.reset = None, True
        else:
            node = self._units.setdefault(key, _Unit())
            node.approved, node.reset = event, False
        self.events.append(event)
        return event

    def _obligation(self, event: Event) -> Obligation:
        owed = self.owed.get((event.report, event.period, event.unit))
        if owed is None:
            raise ReviewRefusedError(f"{event.unit} owes no {event.report} for {event.period}: nothing to submit or "
                                     "approve (a unit that did not exist on the period's last day owes nothing)")
        return owed

    def _check_submit(self, event: Event) -> None:
        owed = self._obligation(event)
        if event.actor != event.unit:
            raise ReviewRefusedError(f"{event.actor} cannot submit {event.report} for {event.unit}: a unit submits "
                                     "only its own report")
        exception = self._exceptions.get((event.report, event.period, event.unit))
        open_until = exception.until if exception is not None and exception.until is not None else owed.lock
        if is_late(event.at, max(owed.lock, open_until)):
            since = owed.lock + dt.timedelta(days=1)
            raise ReviewRefusedError(f"{event.report} {event.period} is locked since {since} (Asia/Shanghai): "
                                     f"ask the city for a lock exception for {event.unit}")
        period = parse_period(event.period)
        for (report, other, unit), entry in self._units.items():
            if report == event.report and unit == event.unit and entry.versions and other != event.period:
                taken = parse_period(other)
                if taken.kind != period.kind and taken.start <= period.end and period.start <= taken.end:
                    raise ReviewRefusedError(
                        f"{event.unit} already reported {event.report} for {other} ({taken.kind}ly): the same "
                        f"measure at a second grain ({event.period}) is refused, never summed; correct {other} "
                        "instead")
        expected = len(self.versions(event.report, event.period, event.unit)) + 1
        if event.version != expected:
            raise ReviewRefusedError(f"version {event.version} of {event.unit}'s {event.report} {event.period} comes "
                                     f"out of order: the next version is {expected}")

    def _check_approve(self, event: Event) -> None:
        tier = tier_of(event.unit)
        if tier == "city" or event.actor != parent_of(event.unit):
            raise ReviewRefusedError(f"{event.actor} cannot approve {event.unit}: only its parent "
                                     f"{parent_of(event.unit) if tier != 'city' else '(none)'} approves it")
        if tier == "community":
            owed = self._obligation(event)
            current = self.current(event.report, event.period, event.unit)
            if current is None or current.version != event.version:
                raise ReviewRefusedError(f"{event.unit} has not submitted {owed.report} for {owed.period}: "
                                         "there is nothing to review yet")
            return
        waiting = [c.code for c in self._children_owing(event.report, event.period, event.unit)
                   if self._approval(event.report, event.period, c.code) is None]
        if waiting:
            shown = ", ".join(waiting[:5]) + (f" and {len(waiting) - 5} more" if len(waiting) > 5 else "")
            raise ReviewRefusedError(f"{event.unit} can be approved only after all its children are: {shown} "
                                     "not yet approved")

    def _check_exception(self, event: Event) -> None:
        owed = self._obligation(event)
        if tier_of(event.actor) != "city":
            raise ReviewRefusedError("only the city opens a lock exception")
        if event.until is None or event.until <= owed.lock or not event.why:
            raise ReviewRefusedError("a lock exception needs a last day after the period's lock day and a reason")

    # -- the tree ------------------------------------------------------------------------------
    def _ancestors_below_city(self, unit: str) -> list[str]:
        out, code = [], unit
        while tier_of(code) not in ("district", "city"):
            code = parent_of(code)
            out.append(code)
        return out

    def _children_owing(self, report: str, period: str, unit: str) -> list[Any]:
        """The children of `unit` whose subtree owes the report for the period."""
        owing = self._owing.get((report, period), set())
        return [c for c in self.registry.children(unit) if c.code in owing]

    def _approval(self, report: str, period: str, unit: str) -> Event | None:
        node = self._units.get((report, period, unit))
        return node.approved if node is not None else None

    def _last_approved_before_reset(self, report: str, period: str, unit: str) -> Event | None:
        approvals = [e for e in self.events if e.kind == "approve" and (e.report, e.period, e.unit) ==
                     (report, period, unit)]
        if not approvals or approvals[-1].version is None:
            return None
        return next(v for v in self.versions(report, period, unit) if v.version == approvals[-1].version)
