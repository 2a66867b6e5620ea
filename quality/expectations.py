"""Custom Great Expectations expectations for what GX lacks, push-down on any SQL engine.

- `ExpectColumnValuesToBeValidCitizenId`: GB 11643 — 17 digits and a check character, the MOD
  11-2 check, and digits 7-14 a real calendar date not after `today`.
- `ExpectColumnPairValuesToBeDivisionOfVintage`: the division code (column A) exists in the
  registry of the row's vintage (column B) at the contract's tier.

Both build one SQLAlchemy condition from portable SQL (substr, strpos, %, CASE, IN, the `~`
regex operator that PostgreSQL and DuckDB share) with no casts that could raise on bad text, so
the same expectation runs inside DuckDB and PostgreSQL without copying rows out.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any, ClassVar, Literal

import sqlalchemy as sa
from great_expectations.execution_engine.sqlalchemy_execution_engine import SqlAlchemyExecutionEngine
from great_expectations.expectations.expectation import ColumnMapExpectation, ColumnPairMapExpectation
from great_expectations.expectations.metrics.map_metric_provider.column_condition_partial import (
    column_condition_partial,
)
from great_expectations.expectations.metrics.map_metric_provider.column_map_metric_provider import (
    ColumnMapMetricProvider,
)
from great_expectations.expectations.metrics.map_metric_provider.column_pair_condition_partial import (
    column_pair_condition_partial,
)
from great_expectations.expectations.metrics.map_metric_provider.column_pair_map_metric_provider import (
    ColumnPairMapMetricProvider,
)

from schemas.citizen_id import CHECK_CHARS, PATTERN, WEIGHTS
from schemas.divisions import SHIPPED_VINTAGES, load_registry

_DIGITS = "0123456789"


def _digit(column: Any, position: int) -> Any:
    """The digit at a 1-based position as a number, 0-9 (-1 for a non-digit), without a cast."""
    return sa.func.strpos(_DIGITS, sa.func.substr(column, position, 1)) - 1


def _number(column: Any, first: int, width: int) -> Any:
    """The digits at first..first+width-1 as a number."""
    return sum((_digit(column, first + i) * 10 ** (width - 1 - i) for i in range(width)), sa.literal(0))


def citizen_id_condition(column: Any, today: dt.date) -> Any:
    """True where the value is a valid GB 11643 number (NULL is left to the not-null check)."""
    form: Any = sa.BinaryExpression(column, sa.literal(PATTERN), sa.custom_op("~"))
    total = sum((_digit(column, i + 1) * w for i, w in enumerate(WEIGHTS)), sa.literal(0))
    check = sa.func.substr(CHECK_CHARS, (total % 11) + 1, 1) == sa.func.substr(column, 18, 1)
    year, month, day = _number(column, 7, 4), _number(column, 11, 2), _number(column, 13, 2)
    leap = sa.or_(sa.and_(year % 4 == 0, year % 100 != 0), year % 400 == 0)
    month_days = sa.case((month.in_([4, 6, 9, 11]), 30),
                         (month == 2, sa.case((leap, 29), else_=28)), else_=31)
    born = year * 10000 + month * 100 + day
    real_past_date = sa.and_(month >= 1, month <= 12, day >= 1, day <= month_days,
                             born <= int(today.strftime("%Y%m%d")))
    return sa.case((form, sa.and_(check, real_past_date)), else_=sa.false())


class ColumnValuesValidCitizenId(ColumnMapMetricProvider):
    """Row condition: a valid GB 11643 citizen identity number."""

    condition_metric_name = "column_values.civicnet_gb11643_valid"
    condition_value_keys = ("today",)

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column: Any, today: str, **kwargs: Any) -> Any:
        return citizen_id_condition(column, dt.date.fromisoformat(today))


class ExpectColumnValuesToBeValidCitizenId(ColumnMapExpectation):
    """Expect each value to be a GB 11643 citizen identity number with a real past birth date.

    Args:
        column: the column with the citizen ID.
        today: ISO date; a birth date after it is invalid.
    """

    today: str
    map_metric = "column_values.civicnet_gb11643_valid"
    success_keys = ("today", "mostly")
    library_metadata: ClassVar[dict[str, Any]] = {"maturity": "production", "tags": ["civicnet", "GB 11643"],
                                                  "contributors": ["civicnet"]}


@cache
def division_codes(vintage: int, tier: str) -> tuple[str, ...]:
    """Every code of one tier in a shipped vintage (all tiers for 'any')."""
    divisions = load_registry(vintage).divisions.values()
    return tuple(sorted(d.code for d in divisions if tier == "any" or d.tier == tier))


def division_condition(code: Any, vintage: Any, tier: str) -> Any:
    """True where `code` is a division of the row's `vintage` at `tier`."""
    return sa.or_(*(sa.and_(vintage == v, code.in_(division_codes(v, tier))) for v in SHIPPED_VINTAGES))


class ColumnPairValuesDivisionOfVintage(ColumnPairMapMetricProvider):
    """Row condition: column A is a division code of the vintage in column B, at a tier."""

    condition_metric_name = "column_pair_values.civicnet_division_of_vintage"
    condition_domain_keys = ("batch_id", "table", "column_A", "column_B", "row_condition",
                             "condition_parser", "ignore_row_if")
    condition_value_keys = ("tier",)

    @column_pair_condition_partial(engine=SqlAlchemyExecutionEngine)  # type: ignore[untyped-decorator]
    def _sqlalchemy(cls, column_A: Any, column_B: Any, tier: str, **kwargs: Any) -> Any:
        return division_condition(column_A, column_B, tier)


class ExpectColumnPairValuesToBeDivisionOfVintage(ColumnPairMapExpectation):
    """Expect column A to hold a division code that exists in the vintage of column B at `tier`.

    Args:
        column_A: the division code column (the contract's anchor).
        column_B: the vintage column.
        tier: city, district, street, community, or 'any'.
    """

    tier: str
    ignore_row_if: Literal["both_values_are_missing", "either_value_is_missing", "neither"] = \
        "either_value_is_missing"
    map_metric = "column_pair_values.civicnet_division_of_vintage"
    success_keys = ("column_A", "column_B", "ignore_row_if", "tier", "mostly")
    library_metadata: ClassVar[dict[str, Any]] = {"maturity": "production", "tags": ["civicnet", "divisions"],
                                                  "contributors": ["civicnet"]}
