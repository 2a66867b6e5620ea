"""The quality gate's records: one expectation's outcome, a batch's verdict, and the gate as a
node's ledger keeps it.

They are light (no Great Expectations import), so reports, the quality page and the status read
them without paying for GX. `quality.gate` produces them; the check record (`quality.stage`)
and the ledger's `gate` column hold their JSON form, read back with `from_dict`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

Verdict = Literal["pass", "warn", "fail"]
Severity = Literal["error", "warn"]
Scalar = int | float | str | bool | None


@dataclass(frozen=True)
class ExpectationOutcome:
    """What one expectation of a suite found in a batch (GX's SUMMARY result, reduced to JSON values)."""

    expectation: str  # GX's expectation type, e.g. expect_column_values_to_not_be_null
    column: str | None  # the column (or columns, comma-joined) it checks; None for a table-level check
    severity: Severity
    success: bool
    description: str | None = None
    unexpected_count: int | None = None
    partial_unexpected: tuple[Scalar, ...] = ()  # up to five examples (they may be personal data)
    observed_value: Scalar = None
    exception: str | None = None  # why the expectation could not run

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in check.json and the ledger."""
        return {"expectation": self.expectation, "column": self.column, "description": self.description,
                "severity": self.severity, "success": self.success, "unexpected_count": self.unexpected_count,
                "partial_unexpected": list(self.partial_unexpected), "observed_value": self.observed_value,
                "exception": self.exception}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExpectationOutcome:
        """Read back `to_dict`'s form (a record written before severities were kept counts as `error`)."""
        return cls(str(d["expectation"]), d.get("column"), cast(Severity, d.get("severity") or "error"),
                   bool(d["success"]), d.get("description"), d.get("unexpected_count"),
                   tuple(d.get("partial_unexpected") or ()), d.get("observed_value"), d.get("exception"))


@dataclass(frozen=True)
class GateResult:
    """The verdict on one batch and every expectation behind it."""

    verdict: Verdict
    results: tuple[ExpectationOutcome, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the ledger and reports."""
        return {"verdict": self.verdict, "results": [r.to_dict() for r in self.results]}

    def failed(self, severity: Severity) -> list[ExpectationOutcome]:
        """The unsuccessful expectations of one severity."""
        return [r for r in self.results if not r.success and r.severity == severity]


def verdict_of(results: tuple[ExpectationOutcome, ...]) -> Verdict:
    """`fail` if an error-severity expectation failed, `warn` if only warnings did, else `pass`."""
    failed = {r.severity for r in results if not r.success}
    return "fail" if "error" in failed else "warn" if failed else "pass"


@dataclass(frozen=True)
class LedgerGate:
    """The gate of one decided batch as its node's ledger keeps it: the verdict (None when the batch
    was refused before the gate ran), every expectation's outcome, and the refusal sentence."""

    batch_id: str
    dataset: str
    verdict: Verdict | None
    results: tuple[ExpectationOutcome, ...] = ()
    error: str | None = None  # why the batch was refused (the failed expectations, or a check before them)
    warnings: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> tuple[ExpectationOutcome, ...]:
        """The expectations that did not succeed, errors and warnings alike."""
        return tuple(r for r in self.results if not r.success)

    def to_dict(self) -> dict[str, Any]:
        """`civicnet status --json`'s form: the failed expectations only (passes are in the verdict)."""
        return {"batch_id": self.batch_id, "dataset": self.dataset, "verdict": self.verdict,
                "expectations": len(self.results), "failed": [r.to_dict() for r in self.failed],
                "error": self.error}


def ledger_gate(batch_id: str, dataset: str, gate_json: str | None) -> LedgerGate:
    """A batch's gate from the JSON its node's ledger holds (None or '' for a batch without one)."""
    parsed: dict[str, Any] = json.loads(gate_json) if gate_json else {}
    return LedgerGate(batch_id, dataset, parsed.get("verdict"),
                      tuple(ExpectationOutcome.from_dict(r) for r in parsed.get("results") or ()),
                      parsed.get("error"), tuple(parsed.get("warnings") or ()))
