"""Who has not submitted: each report's obligations for a period (schemas/reporting.py) against the
submissions the city node holds now, a live query (`civicnet reports missing`), never a figure
kept from an earlier run.

A unit has submitted a report for a period when the city holds at least one current row of that
report anchored at the unit and placed in the period by the report's period fields. The rate of a
report is submitted obligations over obligations, overall and per district, so it cannot exceed
100 %; a unit that submitted without an obligation (closed before the period's end, say) is
listed under `unexpected`, never counted.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from civicnet import context
from schemas.contract import Contract
from schemas.divisions import Tier, in_subtree, validate_code
from schemas.i18n import SHANGHAI
from schemas.reporting import (
    Obligation,
    Period,
    ReportingError,
    Standing,
    obligations,
    parse_period,
    period_containing,
    period_of,
    spans_of,
    standing,
)
from schemas.sql import quote_ident
from warehouse.stores import store_of


def reports() -> list[Contract]:
    """The contracts that are periodic reports, by name."""
    return sorted((c for c in context.contracts() if c.reporting is not None), key=lambda c: c.name)


def expected(contract: Contract, period: Period) -> list[Obligation]:
    """The obligations of one report for one period, from the divisions in force then."""
    assert contract.reporting is not None
    registry = context.registry()
    return obligations(contract.name, contract.reporting, period, spans_of(registry), registry.vintage)


def submitted_units(home: Path, contract: Contract, period: Period) -> set[str]:
    """The units the city holds a current row of the report for in the period."""
    rule = contract.reporting
    assert rule is not None
    where, params = rule.placed_in(period)
    con = context.open_city(home, read_only=True)
    try:
        rows = con.execute(f"SELECT DISTINCT division_code FROM city.{quote_ident(contract.name)} WHERE {where}",
                           params).fetchall()
    finally:
        con.close()
    return {str(r[0]) for r in rows}


def missing_reports(home: Path, period_label: str, tier: Tier | None = None, under: str | None = None,
                    report: str | None = None, now: dt.datetime | None = None) -> dict[str, Any]:
    """The missing list and the rates of every report (or `report`) for the period: obligations of
    units of `tier` only, and of the subtree of `under` only, when given."""
    period = parse_period(period_label)
    if under is not None:
        validate_code(under)
    city = store_of(home, context.city_code())
    if not city.ready(context.contracts()):
        from civicnet.pipeline.verify import NoCityNodeError

        if city.exists():
            raise NoCityNodeError(f"the city node {city.url} was built by another civicnet (another table layout): "
                                  "rebuild the home, then ask again")
        raise NoCityNodeError("the home has no city node yet, so nothing was submitted: run `civicnet demo` or "
                              "the ingest DAGs first")
    chosen = [c for c in reports() if report in (None, c.name)]
    if report is not None and not chosen:
        raise ReportingError(f"{report!r} is not a periodic report; the reports are "
                             f"{', '.join(c.name for c in reports())}")
    now = now or dt.datetime.now(dt.UTC)
    registry = context.registry()
    out: dict[str, Any] = {"period": period.label, "start": period.start.isoformat(), "end": period.end.isoformat(),
                           "as_of": now.astimezone(SHANGHAI).isoformat(timespec="seconds"), "missing": [],
                           "rate": {}, "unexpected": {}}
    for contract in chosen:
        assert contract.reporting is not None
        if contract.reporting.period != period.kind or (tier is not None and contract.reporting.unit_tier != tier):
            continue
        owed = [o for o in expected(contract, period) if under is None or in_subtree(o.unit, under)]
        units = {u for u in submitted_units(home, contract, period) if under is None or in_subtree(u, under)}
        found = standing(owed, units)
        out["missing"] += [o.to_dict() | {"name": registry.get(o.unit).name, "overdue": _overdue(o, now)}
                           for o in found.missing]
        out["rate"][contract.name] = _rates(found, registry.by_tier("district"))
        out["unexpected"][contract.name] = list(found.unexpected)
    return out


def latest_period(home: Path, contract: Contract, now: dt.datetime) -> Period:
    """The period the page shows for a report: the latest one the city holds a submission of, else
    the latest one whose due day has passed (Shanghai)."""
    rule = contract.reporting
    assert rule is not None
    part = quote_ident(rule.part_field) if rule.part_field else "0"
    con = context.open_city(home, read_only=True)
    try:
        found = con.execute(f"SELECT {quote_ident(rule.year_field)}, {part} FROM city.{quote_ident(contract.name)} "
                            "ORDER BY 1 DESC, 2 DESC LIMIT 1").fetchone()
    finally:
        con.close()
    if found is not None:
        return period_of(rule.period, int(found[0]), int(found[1]) if rule.part_field else None)
    today = now.astimezone(SHANGHAI).date()
    period = period_containing(rule.period, today)
    while rule.due(period) >= today:  # not yet due: the one before
        period = period.previous()
    return period


def standings(home: Path, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Each report's missing list and rates for the period the quality page shows (`latest_period`);
    empty when the home has no city node yet."""
    now = now or dt.datetime.now(dt.UTC)
    if not store_of(home, context.city_code()).ready(context.contracts()):
        return []
    return [missing_reports(home, latest_period(home, c, now).label, report=c.name, now=now) for c in reports()]


def _overdue(obligation: Obligation, now: dt.datetime) -> bool:
    return now.astimezone(SHANGHAI).date() > obligation.due


def _rates(found: Standing, districts: list[Any]) -> dict[str, Any]:
    def one(s: Standing) -> dict[str, Any]:
        return {"expected": len(s.expected), "submitted": s.submitted,
                "rate": None if s.rate is None else round(s.rate, 4)}

    missing = {o.unit for o in found.missing}
    by_district = {}
    for d in districts:
        owed = [o for o in found.expected if in_subtree(o.unit, d.code)]
        if owed:
            units = {o.unit for o in owed if o.unit not in missing}
            by_district[d.code] = one(standing(owed, units)) | {"name": d.name}
    return one(found) | {"by_district": by_district}
