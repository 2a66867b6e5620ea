"""Two ingests of one feed at once: two processes checking the same batch both end with the
batch's result, and its staging folder is whole and consistent (check.json last, counts equal
to the Parquet files).

The race is made to happen, not hoped for: the first check pauses inside its quality gate (while
it reads accepted.parquet) until the second is half-way through writing accepted.parquet, or
is waiting for its turn on the batch's lock; the second pauses half-way through that write
until the first has finished."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow  # two processes importing Great Expectations (seconds)

ROOT = Path(__file__).resolve().parents[2]
CHECK = r'''
import datetime as dt, io, json, sys, time
from pathlib import Path
import pyarrow.parquet as pq
import quality.gate as gate
from civicnet import pipeline

home, slug, batch, role, marks = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], Path(sys.argv[5])
lock = home / "staging" / batch / ".lock"

def wait(condition):
    while not condition():
        time.sleep(0.02)

def another_waits_on_the_lock():
    """True when a process is blocked on the batch's lock file (Linux lists waiters with '->')."""
    if not lock.exists():
        return False
    inode = f":{lock.stat().st_ino}"
    return any("->" in l.split() and any(p.endswith(inode) for p in l.split())
               for l in Path("/proc/locks").read_text().splitlines())

if role == "first":
    validate = gate.validate_table
    def paused(*args, **kwargs):
        (marks / "first_in_gate").touch()
        wait(lambda: (marks / "second_half_written").exists() or another_waits_on_the_lock())
        return validate(*args, **kwargs)
    gate.validate_table = paused
else:
    write = pq.write_table
    def half_then_pause(table, where, *args, **kwargs):
        if Path(where).name != "accepted.parquet":
            return write(table, where, *args, **kwargs)
        buffer = io.BytesIO()
        write(table, buffer, *args, **kwargs)
        data = buffer.getvalue()
        with open(where, "wb") as out:
            out.write(data[: len(data) // 2])
            out.flush()
            (marks / "second_half_written").touch()
            wait(lambda: (marks / "first_done").exists())
            out.write(data[len(data) // 2:])
    pq.write_table = half_then_pause
print(json.dumps(pipeline.check(home, slug, batch, dt.date(2021, 6, 30))["verdict"]))
'''


def wait_for(condition: Callable[[], bool]) -> None:
    while not condition():
        time.sleep(0.05)


def a_passed_batch(home: Path) -> tuple[str, str, dict[str, object]]:
    """A batch of the demo home that passed its gate: (feed, batch id, its check result)."""
    for check in sorted((home / "staging").glob("*/check.json")):
        result = json.loads(check.read_text("utf-8"))
        if result["gate"]["verdict"] != "fail" and result["accepted"] > 0:
            return str(result["feed"]), str(result["batch_id"]), result
    raise AssertionError("the demo home has no passed batch")


def test_two_checks_of_one_batch_at_once_both_end_consistent(demo_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(demo_home, home, ignore=lambda folder, names: [n for n in names if n in ("nodes", "extracts")])
    slug, batch, before = a_passed_batch(home)
    script, marks = tmp_path / "check.py", tmp_path / "marks"
    script.write_text(CHECK, "utf-8")
    marks.mkdir()
    env = os.environ | {"PYTHONPATH": str(ROOT)}

    def start(role: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, str(script), str(home), slug, batch, role, str(marks)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    first = start("first")
    wait_for(lambda: (marks / "first_in_gate").exists() or first.poll() is not None)
    second = start("second")
    first_out, first_err = first.communicate()
    (marks / "first_done").touch()
    second_out, second_err = second.communicate()

    verdict = json.dumps(before["gate"]["verdict"])  # type: ignore[index]
    assert (first.returncode, first_out.strip()) == (0, verdict), first_err[-3000:]
    assert (second.returncode, second_out.strip()) == (0, verdict), second_err[-3000:]
    stage = home / "staging" / batch
    result = json.loads((stage / "check.json").read_text("utf-8"))
    assert result["accepted"] == pq.read_table(stage / "accepted.parquet").num_rows == before["accepted"]
    assert result["quarantined"] == pq.read_table(stage / "quarantined.parquet").num_rows == before["quarantined"]
    def files(folder: Path) -> list[str]:  # a check's files (the lock file and private folders start with '.')
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))

    assert files(stage) == files(demo_home / "staging" / batch)
    assert not [p for p in stage.iterdir() if p.name.startswith(".check-")]  # no private folder left behind
