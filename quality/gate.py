"""The quality gate: the contract's Great Expectations suites, run push-down where the batch is.

A checked batch sits in staging as Parquet (quality/stage.py). The gate opens a small DuckDB file beside it
(`gate.duckdb`) with a view `accepted` over the accepted rows and a one-row table `summary`,
and validates both with GX's SQL engine inside DuckDB (quality/gx_engine.py): no row is copied
into pandas, however large the batch. `validate_table` runs any suite on any warehouse URL the
same way (PostgreSQL included).

Expectations carry a severity: `error` fails the batch (it is not applied and stays in
landing), `warn` is reported only.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import great_expectations as gx

from quality.gx_engine import add_datasource, close_datasource, ephemeral_context
from quality.stage import ACCEPTED_FILE
from quality.stage import RESULTS_FILE as RESULTS_FILE  # where the results are, as gate users know it
from quality.suite import batch_expectations, contract_expectations
from quality.verdict import ExpectationOutcome, GateResult, verdict_of
from quality.verdict import Verdict as Verdict  # the gate's verdicts, as gate users know them
from schemas.contract import Contract
from schemas.homefiles import secure
from schemas.sql import quote_ident, quote_literal

GATE_FILE = "gate.duckdb"


@dataclass(frozen=True)
class BatchSummary:
    """Batch-level facts the batch suite checks."""

    received: int
    quarantined: int
    broken_keys: int
    volume_ratio: float | None  # received over the median of the feed's recent batches (full deliveries)

    def shares(self) -> dict[str, float | None]:
        """The summary row."""
        total = self.received or 1
        return {"quarantined_share": self.quarantined / total, "broken_key_share": self.broken_keys / total,
                "volume_ratio": self.volume_ratio}


def _outcome(r: Any) -> ExpectationOutcome:
    cfg: Any = r.expectation_config
    kwargs = cfg.kwargs
    column = kwargs.get("column") or kwargs.get("column_A") or (
        ",".join(kwargs["column_list"]) if kwargs.get("column_list") else None)
    messages = [i.get("exception_message") for i in (r.exception_info or {}).values() if isinstance(i, dict)]
    if not messages and isinstance(r.exception_info, dict) and r.exception_info.get("exception_message"):
        messages = [r.exception_info["exception_message"]]
    observed = r.result.get("observed_value")
    return ExpectationOutcome(
        expectation=cfg.type, column=column, description=cfg.description,
        severity=(cfg.meta or {}).get("severity", "error"), success=bool(r.success),
        unexpected_count=r.result.get("unexpected_count"),
        partial_unexpected=tuple(_jsonable(v) for v in (r.result.get("partial_unexpected_list") or [])[:5]),
        observed_value=_jsonable(observed), exception=next((m for m in messages if m), None))


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def validate_table(url: str, table: str, name: str,
                   expectations: list[Any]) -> tuple[tuple[ExpectationOutcome, ...], Any]:
    """Validate one table of a warehouse (a `duckdb:///` file or a PostgreSQL URL) push-down;
    returns one outcome per expectation and GX's own result (for Data Docs).

    Results are asked for in GX's SUMMARY format: with BOOLEAN_ONLY (great-expectations 1.24,
    SQL engine) map expectations report success even where rows fail them."""
    ctx = ephemeral_context()
    ds = add_datasource(ctx, name, url)
    try:
        batch = ds.add_table_asset(table, table_name=table).add_batch_definition_whole_table(name).get_batch()
        suite = ctx.suites.add(gx_suite(name, [copy.copy(e) for e in expectations]))
        result = batch.validate(suite, result_format="SUMMARY")
        return tuple(_outcome(r) for r in result.results), result
    finally:
        close_datasource(ds)


def gx_suite(name: str, expectations: list[Any]) -> Any:
    """An expectation suite of these expectations."""
    return gx.ExpectationSuite(name=name, expectations=expectations)


def _stage(stage: Path, contract: Contract, summary: BatchSummary) -> Path:
    """gate.duckdb: a view over accepted.parquet and the summary row."""
    path = stage / GATE_FILE
    path.unlink(missing_ok=True)
    fields = ", ".join(quote_ident(f) for f in contract.field_names)
    parquet = quote_literal(str((stage / ACCEPTED_FILE).resolve()))
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE VIEW accepted AS SELECT {fields} FROM read_parquet({parquet})")
        con.execute("CREATE TABLE summary (quarantined_share DOUBLE, broken_key_share DOUBLE, volume_ratio DOUBLE)")
        con.execute("INSERT INTO summary VALUES ($quarantined_share, $broken_key_share, $volume_ratio)",
                    summary.shares())
    return path


def run_gate(contract: Contract, stage: Path, summary: BatchSummary, today: str,
             full_delivery: bool = False) -> GateResult:
    """Validate a checked batch in `stage` (its accepted rows); `fail` if any error-severity
    expectation fails. GX's results are kept in `stage/gx_results.json` for Data Docs."""
    url = f"duckdb:///{_stage(stage, contract, summary)}"
    expectations = contract_expectations(contract, today)
    rows, batch_result = validate_table(url, "accepted", f"{contract.name}.rows", expectations)
    more, summary_result = validate_table(url, "summary", f"{contract.name}.batch", batch_expectations(full_delivery))
    rows += more
    (stage / RESULTS_FILE).write_text(json.dumps(
        [batch_result.to_json_dict(), summary_result.to_json_dict()], ensure_ascii=False), "utf-8")
    secure(stage / RESULTS_FILE)  # the failed values GX lists may be personal data
    (stage / GATE_FILE).unlink(missing_ok=True)
    return GateResult(verdict_of(rows), rows)
