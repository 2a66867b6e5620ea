"""The bench's measuring helpers: node files written, a process tree's memory, the sweep's line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from civicnet.bench.measure import node_files, run_measured, written
from civicnet.bench.sweep import fit


def _node(home: Path, tier: str, code: str, text: str) -> Path:
    path = home / "nodes" / tier / f"{code}.duckdb"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_written_counts_new_and_changed_node_files_per_tier(tmp_path: Path) -> None:
    _node(tmp_path, "city", "440300000000", "a")
    kept = _node(tmp_path, "district", "440303000000", "b")
    before = node_files(tmp_path)
    _node(tmp_path, "city", "440300000000", "a2")  # changed: size differs
    _node(tmp_path, "community", "440303001001", "new")
    (kept.parent / "440303000000.duckdb.wal").write_text("w")  # a WAL is not a node file of its own

    got = written(before, node_files(tmp_path))

    assert got["files"] == 2
    assert got["files_per_tier"] == {"city": 1, "district": 0, "street": 0, "community": 1}
    assert got["bytes_per_tier"]["city"] == 2 and got["bytes_per_tier"]["community"] == 3


def test_run_measured_reads_the_last_line_and_the_tree_memory() -> None:
    code = ("import json, subprocess, sys\n"
            "subprocess.run([sys.executable, '-c', 'x = bytearray(64 << 20); import time; time.sleep(0.4)'])\n"
            "print('noise'); print(json.dumps({'seconds': 1.0}))")
    got = run_measured([sys.executable, "-c", code])
    assert got["seconds"] == 1.0
    assert got["peak_largest_mib"] >= 64  # the child's child, seen by wait4 even if a sample missed it
    assert got["processes"] >= 1


def test_run_measured_names_a_failed_command() -> None:
    with pytest.raises(RuntimeError, match="failed \\(3\\)"):
        run_measured([sys.executable, "-c", "import sys; sys.exit(3)"])


def test_fit_splits_fixed_and_per_row_cost() -> None:
    assert fit([0.1, 1.0, 10.0], [12.0, 30.0, 210.0]) == pytest.approx((10.0, 20.0))
    assert fit([1.0], [5.0]) == (5.0, 0.0)
