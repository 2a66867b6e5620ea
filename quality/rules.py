"""Dataset rules: business rules a contract's types and ranges cannot say, written once here.

Each rule names the rows that break it with one SQL condition over the contract's typed columns,
in the SQL that DuckDB and PostgreSQL share. The same condition is used twice:
- in conform (quality/conform.py), an `error` rule quarantines each row that breaks it, with the
  rule's code as the reason and its sentence for the sender;
- in the quality gate (quality/suite.py), every rule is a Great Expectations
  `UnexpectedRowsExpectation` over the accepted rows: for an `error` rule that proves conform
  kept none back (a failure refuses the batch), for a `warn` rule it counts the rows applied
  but worth a look, reported with the batch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from schemas.errors import TerminalError

Severity = Literal["error", "warn"]


class UnknownRuleError(TerminalError):
    """A reason code names no dataset rule of this civicnet (a quarantined row of a newer or older one)."""


@dataclass(frozen=True)
class Rule:
    """One dataset rule: `violation(today)` is a SQL condition true on the rows that break it."""

    code: str
    dataset: str
    severity: Severity
    field: str
    violation: Callable[[dt.date], str]
    message: str  # {title}, {field}, {value} as in quality.reasons.MESSAGES

    def violation_sql(self, today: dt.date) -> str:
        """The condition for this business date (a NULL result means the rule does not apply)."""
        return self.violation(today)


EARLIEST_DATE = dt.date(1900, 1, 1)  # no facility, station or move civicnet records is older
PLANNING_YEARS = 10  # a facility planned further ahead than this is a mistyped year (9999, 2201)


def _date(day: dt.date) -> str:
    return f"DATE '{day.isoformat()}'"


def _years_before(today: dt.date, years: int) -> dt.date:
    return today.replace(year=today.year - years, day=min(today.day, 28))


RULES: tuple[Rule, ...] = (
    Rule("birth_date_in_future", "residents", "error", "birth_date",
         lambda today: f"birth_date > {_date(today)}",
         "{title} ({field}) '{value}' is after today; correct the birth date and resend"),
    Rule("moved_in_before_birth", "residents", "error", "moved_in_date",
         lambda today: "moved_in_date < birth_date",
         "{title} ({field}) '{value}' is before the person's birth date; correct one of the two and resend"),
    Rule("moved_in_date_in_future", "residents", "error", "moved_in_date",
         lambda today: f"moved_in_date > {_date(today)}",
         "{title} ({field}) '{value}' is after today; correct the moved-in date and resend"),
    Rule("birth_date_implausibly_old", "residents", "warn", "birth_date",
         lambda today: f"birth_date < {_date(_years_before(today, 120))}",
         "{title} ({field}) '{value}' means an age over 120 years; check the record"),
    Rule("floor_area_not_positive", "facilities", "error", "floor_area_m2",
         lambda today: "floor_area_m2 <= 0",
         "{title} ({field}) '{value}' is not a positive area; send the floor area in square metres"),
    Rule("floor_area_implausibly_large", "facilities", "warn", "floor_area_m2",
         lambda today: "floor_area_m2 > 20000",
         "{title} ({field}) '{value}' is larger than any community facility (20,000 m²); check the unit"),
    Rule("facility_opens_in_future", "facilities", "warn", "opening_date",
         lambda today: f"opening_date > {_date(today)}",
         "{title} ({field}) '{value}' is in the future; send planned facilities once they open"),
    Rule("opening_date_implausible", "facilities", "error", "opening_date",
         lambda today: f"opening_date > {_date(_years_before(today, -PLANNING_YEARS))} "
                       f"OR opening_date < {_date(EARLIEST_DATE)}",
         "{title} ({field}) '{value}' is not a plausible opening date (before 1900, or more than "
         f"{PLANNING_YEARS} years ahead); correct the year and resend"),
    Rule("centre_without_doctor", "health_stations", "warn", "doctors",
         lambda today: "station_type = 'centre' AND doctors = 0",
         "{title} ({field}) '{value}': a health service centre with no doctor; check the staffing"),
    Rule("station_opens_in_future", "health_stations", "error", "opened_on",
         lambda today: f"opened_on > {_date(today)}",
         "{title} ({field}) '{value}' is after today; send the station once it is open"),
    Rule("expenditure_in_future_year", "community_expenditures", "error", "year",
         lambda today: f"year > {today.year}",
         "{title} ({field}) '{value}' is a year still to come; report spending once it is made"),
    Rule("cases_per_member_implausible", "mediation_committees", "warn", "cases_mediated",
         lambda today: "cases_mediated > members * 200",
         "{title} ({field}) '{value}' is over 200 cases per committee member; check the count"),
)


def rules_for(dataset: str, severity: Severity | None = None) -> list[Rule]:
    """The rules of one dataset, optionally of one severity, in a stable order."""
    return [r for r in RULES if r.dataset == dataset and (severity is None or r.severity == severity)]


def rule(code: str) -> Rule:
    """The rule with this code."""
    for r in RULES:
        if r.code == code:
            return r
    raise UnknownRuleError(f"no dataset rule {code!r}; known: {[r.code for r in RULES]}")
