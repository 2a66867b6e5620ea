"""Great Expectations suites generated from a contract, plus the batch-level suite.

Every expectation carries its severity twice: GX's own (`critical` / `warning`, shown in Data
Docs) and civicnet's word in `meta.severity` (`error` refuses the batch, `warn` is reported).

- `contract_expectations`: over the accepted rows — the column set, types, required fields,
  the primary key's uniqueness, code lists, patterns, lengths, ranges, the anchor as a division
  of the row's vintage at the contract's tier, GB 11643 citizen IDs, and the dataset rules.
- `batch_expectations`: over the one-row summary of the batch — the share of rows quarantined,
  the share of rows whose key is broken (repeated with other content, or missing), and, for a
  feed that delivers whole registers, the volume against its recent batches.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import great_expectations as gx

from quality.expectations import ExpectColumnPairValuesToBeDivisionOfVintage, ExpectColumnValuesToBeValidCitizenId
from quality.rules import Severity, rules_for
from schemas.contract import Contract

MAX_QUARANTINE_SHARE = 0.05
# A few rows repeating a key with other content are quarantined one by one; beyond this share the
# key itself is broken (an export that filled the key column wrongly) and the batch is refused.
MAX_BROKEN_KEY_SHARE = 0.001
# A whole-register delivery below this share of its recent batches' median is refused (a
# truncated export); outside the warn band it is applied and reported.
MIN_VOLUME_RATIO = 0.1
WARN_VOLUME_BAND = (0.5, 3.0)
# Column type names GX checks against: SQLAlchemy's generic ones (what DuckDB reflects) and
# PostgreSQL's (VARCHAR is a String, so either matches there).
TYPE_NAMES: dict[str, list[str]] = {
    "string": ["String", "VARCHAR", "TEXT"], "integer": ["BigInteger", "Integer", "BIGINT", "INTEGER"],
    "number": ["Float", "Double", "Numeric", "DOUBLE_PRECISION"], "date": ["Date", "DATE"],
    "datetime": ["DateTime", "TIMESTAMP"], "boolean": ["Boolean", "BOOLEAN"]}
_GX_SEVERITY: dict[Severity, Literal["critical", "warning"]] = {"error": "critical", "warn": "warning"}


def _exp(cls: Any, severity: Severity = "error", **kwargs: Any) -> Any:
    return cls(severity=_GX_SEVERITY[severity], meta={"severity": severity}, **kwargs)


def _field_expectations(contract: Contract, today: str) -> list[Any]:
    e: Any = gx.expectations
    out = []
    for f in contract.fields:
        c = f.constraints
        out.append(_exp(e.ExpectColumnValuesToBeInTypeList, column=f.name, type_list=TYPE_NAMES[f.type]))
        if f.required:
            out.append(_exp(e.ExpectColumnValuesToNotBeNull, column=f.name))
        if "enum" in c:
            out.append(_exp(e.ExpectColumnValuesToBeInSet, column=f.name, value_set=list(c["enum"])))
        if "gb11643" in f.checks:
            out.append(_exp(ExpectColumnValuesToBeValidCitizenId, column=f.name, today=today))
        elif "pattern" in c:
            out.append(_exp(e.ExpectColumnValuesToMatchRegex, column=f.name, regex=c["pattern"]))
        if "minLength" in c or "maxLength" in c:
            out.append(_exp(e.ExpectColumnValueLengthsToBeBetween, column=f.name,
                            min_value=c.get("minLength"), max_value=c.get("maxLength")))
        if "minimum" in c or "maximum" in c:
            out.append(_exp(e.ExpectColumnValuesToBeBetween, column=f.name,
                            min_value=c.get("minimum"), max_value=c.get("maximum")))
    return out


def contract_expectations(contract: Contract, today: str) -> list[Any]:
    """The suite over a batch's accepted rows (a table with exactly the contract's columns)."""
    e: Any = gx.expectations
    out = [_exp(e.ExpectTableColumnsToMatchSet, column_set=contract.field_names, exact_match=True),
           _exp(e.ExpectTableRowCountToBeBetween, min_value=1)]
    if len(contract.primary_key) == 1:
        out.append(_exp(e.ExpectColumnValuesToBeUnique, column=contract.primary_key[0]))
    else:
        out.append(_exp(e.ExpectCompoundColumnsToBeUnique, column_list=list(contract.primary_key)))
    out += _field_expectations(contract, today)
    out.append(_exp(ExpectColumnPairValuesToBeDivisionOfVintage, column_A=contract.anchor, column_B="vintage",
                    tier=contract.anchor_tier))
    day = dt.date.fromisoformat(today)
    for r in rules_for(contract.name):
        out.append(_exp(e.UnexpectedRowsExpectation, r.severity, description=f"dataset rule {r.code}",
                        unexpected_rows_query=f"SELECT * FROM {{batch}} WHERE {r.violation_sql(day)}",
                        notes=r.message.format(title=contract.field(r.field).title, field=r.field,
                                               value="…")))
    return out


def batch_expectations(full_delivery: bool) -> list[Any]:
    """The suite over the batch summary (one row: quarantined_share, broken_key_share, volume_ratio)."""
    e: Any = gx.expectations
    out = [_exp(e.ExpectColumnValuesToBeBetween, column="quarantined_share", min_value=0.0,
                max_value=MAX_QUARANTINE_SHARE),
           _exp(e.ExpectColumnValuesToBeBetween, column="broken_key_share", min_value=0.0,
                max_value=MAX_BROKEN_KEY_SHARE)]
    if full_delivery:  # NULL (no recent batch to compare with) passes: GX skips missing values
        out += [_exp(e.ExpectColumnValuesToBeBetween, column="volume_ratio", min_value=MIN_VOLUME_RATIO),
                _exp(e.ExpectColumnValuesToBeBetween, "warn", column="volume_ratio",
                     min_value=WARN_VOLUME_BAND[0], max_value=WARN_VOLUME_BAND[1])]
    return out
