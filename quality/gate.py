"""The quality gate: a Great Expectations suite generated from the contract, run on each batch.

The suite runs on the batch in memory through GX's pandas engine (Arrow-backed columns). We do
not use GX's SQL engine on DuckDB: with great-expectations 1.24 and duckdb_engine 0.17 it closes
the connection before fetching, so every metric comes back empty and every expectation
"fails" (tests/unit/quality/test_gate.py keeps a reproduction).

Expectations carry a severity in their meta: `error` fails the batch (it is not applied and
stays in landing), `warn` is reported only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import great_expectations as gx
import pandas as pd
import pyarrow as pa
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)

from schemas.contract import Contract

Severity = Literal["error", "warn"]
MAX_QUARANTINE_SHARE = 0.05
logging.getLogger("great_expectations").setLevel(logging.WARNING)


def _skip_batch_fingerprint() -> None:
    """GX's pandas engine fingerprints every batch under 1 GB with pandas' hash_pandas_object,
    twice per validation (great_expectations/execution_engine/pandas_execution_engine.py,
    HASH_THRESHOLD): 10-20 s for 1.7 million rows, while the expectations themselves take
    under a second. The fingerprint is only a batch marker we never read, so we turn it off
    here, in this one place, by lowering the threshold to zero."""
    from great_expectations.execution_engine import pandas_execution_engine

    pandas_execution_engine.HASH_THRESHOLD = 0


@dataclass(frozen=True)
class GateResult:
    """The verdict on one batch and every expectation behind it."""

    verdict: Literal["pass", "warn", "fail"]
    results: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the ledger and reports."""
        return {"verdict": self.verdict, "results": self.results}


def _exp(cls: Any, severity: Severity = "error", **kwargs: Any) -> Any:
    return cls(meta={"severity": severity}, **kwargs)


def batch_expectations(contract: Contract) -> list[Any]:
    """Row-level expectations over the accepted rows, derived from the contract."""
    e: Any = gx.expectations
    out = [_exp(e.ExpectTableColumnsToMatchSet, column_set=contract.field_names, exact_match=True),
           _exp(e.ExpectTableRowCountToBeBetween, min_value=1)]
    if len(contract.primary_key) == 1:
        out.append(_exp(e.ExpectColumnValuesToBeUnique, column=contract.primary_key[0]))
    else:
        out.append(_exp(e.ExpectCompoundColumnsToBeUnique, column_list=list(contract.primary_key)))
    for f in contract.fields:
        c = f.constraints
        if f.required:
            out.append(_exp(e.ExpectColumnValuesToNotBeNull, column=f.name))
        if "enum" in c:
            out.append(_exp(e.ExpectColumnValuesToBeInSet, column=f.name, value_set=list(c["enum"])))
        if "minimum" in c or "maximum" in c:
            out.append(_exp(e.ExpectColumnValuesToBeBetween, column=f.name,
                            min_value=c.get("minimum"), max_value=c.get("maximum")))
    out.append(_exp(e.ExpectColumnValuesToMatchRegex, column=contract.anchor, regex=r"^\d{12}$"))
    return out


def summary_expectations() -> list[Any]:
    """Batch-level expectations over a one-row summary (quarantine share)."""
    e: Any = gx.expectations
    return [_exp(e.ExpectColumnValuesToBeBetween, column="quarantined_share",
                 min_value=0.0, max_value=MAX_QUARANTINE_SHARE)]


def _validate(name: str, frame: pd.DataFrame, expectations: list[Any]) -> list[dict[str, Any]]:
    _skip_batch_fingerprint()
    config = DataContextConfig(progress_bars=ProgressBarsConfig(globally=False),
                               store_backend_defaults=InMemoryStoreBackendDefaults())
    ctx = gx.get_context(mode="ephemeral", project_config=config)
    batch_def = ctx.data_sources.add_pandas(name).add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
    suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    result = batch_def.get_batch(batch_parameters={"dataframe": frame}).validate(suite, result_format="SUMMARY")
    out = []
    for r in result.results:
        cfg: Any = r.expectation_config
        out.append({"expectation": cfg.type, "column": cfg.kwargs.get("column"),
                    "severity": (cfg.meta or {}).get("severity", "error"), "success": bool(r.success),
                    "unexpected_count": r.result.get("unexpected_count"),
                    "observed_value": _jsonable(r.result.get("observed_value")),
                    "exception": (r.exception_info or {}).get("exception_message")})
    return out


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def run_gate(contract: Contract, accepted: pa.Table, received: int, quarantined: int) -> GateResult:
    """Validate a conformed batch; `fail` if any error-severity expectation fails."""
    frame = accepted.select(contract.field_names).to_pandas(types_mapper=pd.ArrowDtype)
    share = quarantined / received if received else 0.0
    summary = pd.DataFrame({"quarantined_share": [share]})
    results = _validate(f"{contract.name}_batch", frame, batch_expectations(contract))
    results += _validate(f"{contract.name}_summary", summary, summary_expectations())
    failed = {r["severity"] for r in results if not r["success"]}
    verdict: Literal["pass", "warn", "fail"] = "fail" if "error" in failed else "warn" if failed else "pass"
    return GateResult(verdict, results)
