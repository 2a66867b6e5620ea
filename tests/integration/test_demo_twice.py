"""Issue 9 item 7: `civicnet demo` run twice on one home exits 0 both times and changes nothing.

The second run is day two of the network: every pull feed runs again over sources that did not
change (the justice tap re-reads its boundary records from its bookmark, the health API its
lag window), the push step is done, and network_sync runs again. Scale 0.0005 is the smallest
the end-to-end DAG tests use: every connector kind (file drops, SQL, REST, Singer, push) takes
part, and the cost is Airflow's (13 DAG steps a run), not the data's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from civicnet.pipeline import status

pytestmark = [pytest.mark.slow, pytest.mark.daytwo]  # `make test-day-two`: many minutes

SCALE = "0.0005"
KINDS = ("divisions", "residents", "facilities", "health_stations", "mediation_committees",
         "community_expenditures")  # files, files, SQL, REST, Singer, push


def demo(home: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "civicnet"
    return subprocess.run([str(exe), "demo", "--scale", SCALE, "--home", str(home)],
                          capture_output=True, text=True, check=False)


def figures(home: Path) -> dict[str, Any]:
    """What the demo prints, as data: rows per tier and dataset, quarantine, and the ledger's totals."""
    collected = status.collect(home)
    applied = {b.batch_id: b.applied for b in collected.batches}
    return {"rows": status.rows_by_tier(collected.nodes), "quarantine": collected.quarantine,
            "applied": sum(applied.values()), "batches": applied}


@pytest.fixture(scope="module")
def twice(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("demo_twice")
    first = demo(home)
    after_first = figures(home) if first.returncode == 0 else {}
    second = demo(home)
    return {"first": first, "second": second, "after_first": after_first, "after_second": figures(home)}


def test_both_runs_exit_0(twice: dict[str, Any]) -> None:
    for run in ("first", "second"):
        done = twice[run]
        assert done.returncode == 0, f"{run} run: {done.stderr[-3000:]}"


def test_the_first_run_fills_every_tier_with_every_kind(twice: dict[str, Any]) -> None:
    rows = twice["after_first"]["rows"]
    assert [d for d in KINDS if not rows["city"].get(d)] == []
    assert rows["community"]["residents"] == rows["city"]["residents"]


def test_the_second_run_shows_the_same_figures(twice: dict[str, Any]) -> None:
    first, second = twice["after_first"], twice["after_second"]
    assert second["rows"] == first["rows"]
    assert second["quarantine"] == first["quarantine"]
    assert second["applied"] == first["applied"]
    # batches the second run decided (re-read boundary records) applied nothing
    assert {b: n for b, n in second["batches"].items() if b not in first["batches"]} == \
        {b: 0 for b in second["batches"] if b not in first["batches"]}
