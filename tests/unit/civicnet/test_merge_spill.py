"""A merge killed with SIGKILL leaves its DuckDB spill folder in landing; the next merge removes it.

Two merges into one home never overlap (each holds the city node's lock before it makes its spill
folder), so that a live process's folder is kept is tested with scratch folders themselves
(tests/unit/schemas/test_scratch.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from civicnet.pipeline import ingest
from schemas.layout import landing_folder

REPO = Path(__file__).resolve().parents[3]
SLUG = "statistics_divisions"
# a real merge (of no batch), held where it works in its spill folder: writing the reports it owes
MERGING = ("import sys, time; from pathlib import Path; from civicnet.pipeline import ingest; "
           "ingest.write_owed = lambda *a: (print('merging', flush=True), time.sleep(60)); "
           f"ingest.merge(Path(sys.argv[1]), {SLUG!r}, [])")


def spill_folders(home: Path) -> list[Path]:
    return sorted(landing_folder(home).glob(".merge-spill-*"))


@contextmanager
def merging(home: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process in the middle of a merge, with its spill folder made; killed (SIGKILL) on leaving."""
    child = subprocess.Popen([sys.executable, "-c", MERGING, str(home)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "merging"
        yield child
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_the_next_merge_removes_a_killed_merges_spill_folder(tmp_path: Path) -> None:
    with merging(tmp_path):
        (stale,) = spill_folders(tmp_path)
        (stale / "duckdb_temp_storage-0.tmp").write_bytes(b"\0" * 4096)  # what DuckDB spilled
    assert spill_folders(tmp_path) == [stale]  # SIGKILL: its `finally` never ran
    ingest.merge(tmp_path, SLUG, [])
    assert spill_folders(tmp_path) == []

