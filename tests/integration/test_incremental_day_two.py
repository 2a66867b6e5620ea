"""Issue 9 item 7, at the pipeline: day two of the justice bureau's incremental Singer feed.

The tap resumes from its bookmark, inclusive, so a pull on a day with no edits re-reads the
records that share the bookmark's time: a small batch of unchanged rows. Declared `delivery:
full`, the volume gate refused it as a truncated export (a second `make demo` failed there);
as a feed of changes it is applied, changing nothing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from conftest import AS_OF

from civicnet import context, pipeline
from civicnet.demo.departments.justice import change_justice, generate_justice

FEED = "justice_mediation_committees"
TOKEN = "day-two-token"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[list[dict[str, Any]]]:
    """Three ingests: the register, the register after 5 % of committees changed, then a day with no edits."""
    home = tmp_path_factory.mktemp("day_two")
    extra = {"token": TOKEN, "expected_token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest()}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_JUSTICE_TAP", json.dumps({"conn_type": "generic", "extra": extra}))
        generate_justice(home, context.registry())
        first = pipeline.ingest_feed(home, FEED, AS_OF)
        change_justice(home, fraction=0.05)
        second = pipeline.ingest_feed(home, FEED, AS_OF)
        third = pipeline.ingest_feed(home, FEED, AS_OF)
    return [first, second, third]


def test_the_changed_committees_are_applied(runs: list[list[dict[str, Any]]]) -> None:
    first, second, _ = runs
    assert [o["status"] for o in first + second] == ["applied", "applied"]
    assert second[0]["applied"] == round(first[0]["received"] * 0.05)


def test_a_day_without_edits_re_reads_the_boundary_and_is_applied_changing_nothing(
        runs: list[list[dict[str, Any]]]) -> None:
    first, _, (third,) = runs
    assert 0 < third["received"] < 0.1 * first[0]["received"]  # what the volume gate took for a collapse
    assert (third["status"], third["applied"], third["unchanged"]) == ("applied", 0, third["received"])
