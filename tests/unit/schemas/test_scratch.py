"""Scratch folders (a merge's DuckDB spill) are swept once their owner is gone, never while it runs."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from schemas import scratch
from schemas.scratch import OWNER_FILE, Owner, make_scratch, sweep_scratch, this_process

PREFIX = ".merge-spill-"
REPO = Path(__file__).resolve().parents[3]


def owning_process(parent: Path) -> tuple[subprocess.Popen[str], Path]:
    """Another process, running, and the scratch folder it made."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from schemas.scratch import make_scratch;"
         f"print(make_scratch(Path(sys.argv[1]), {PREFIX!r}), flush=True); time.sleep(60)", str(parent)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert child.stdout is not None
    folder = Path(child.stdout.readline().strip())
    child.stdout.close()
    (folder / "duckdb_temp_block-1.block").write_bytes(b"spilled")
    return child, folder


def kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait()


def killed_owner(parent: Path) -> Path:
    """A scratch folder made by a process then killed with SIGKILL (its cleanup never ran)."""
    child, folder = owning_process(parent)
    kill(child)
    return folder


def test_the_folder_of_a_killed_process_is_removed(tmp_path: Path) -> None:
    folder = killed_owner(tmp_path)
    assert folder.is_dir() and (folder / OWNER_FILE).exists()
    swept = sweep_scratch(tmp_path, PREFIX)
    assert swept.removed == (folder,) and not folder.exists()


def test_the_folder_of_another_live_process_is_kept_until_it_is_killed(tmp_path: Path) -> None:
    child, folder = owning_process(tmp_path)
    try:
        assert sweep_scratch(tmp_path, PREFIX) == scratch.Sweep((), ()) and folder.is_dir()
    finally:
        kill(child)
    assert sweep_scratch(tmp_path, PREFIX).removed == (folder,)


def test_the_folder_of_this_process_is_kept(tmp_path: Path) -> None:
    mine = make_scratch(tmp_path, PREFIX)
    dead = killed_owner(tmp_path)
    swept = sweep_scratch(tmp_path, PREFIX)
    assert mine.is_dir() and swept.removed == (dead,) and swept.unjudged == ()


def write_owner(parent: Path, owner: Owner) -> Path:
    folder = parent / f"{PREFIX}planted"
    folder.mkdir()
    (folder / OWNER_FILE).write_text(owner.to_json(), "utf-8")
    return folder


def test_a_live_pid_that_started_at_another_time_is_not_the_owner(tmp_path: Path) -> None:
    me = this_process()
    assert me.started  # Linux: /proc gives the start time
    reused = write_owner(tmp_path, dataclasses.replace(me, started=str(int(me.started) - 1)))
    assert sweep_scratch(tmp_path, PREFIX).removed == (reused,)


def test_an_owner_of_an_earlier_boot_is_gone(tmp_path: Path) -> None:
    me = this_process()
    earlier = write_owner(tmp_path, dataclasses.replace(me, boot="00000000-0000-0000-0000-000000000000"))
    assert sweep_scratch(tmp_path, PREFIX).removed == (earlier,)


def test_another_hosts_folder_is_kept_and_reported(tmp_path: Path) -> None:
    # a home on a shared disk: that host's pids say nothing here
    theirs = write_owner(tmp_path, dataclasses.replace(this_process(), host="another-host", pid=1))
    swept = sweep_scratch(tmp_path, PREFIX)
    assert swept == scratch.Sweep((), (theirs,)) and theirs.is_dir()


def test_another_containers_folder_is_kept_and_reported(tmp_path: Path) -> None:
    # same kernel and hostname, its own pid namespace: pid 1 there is not our pid 1
    theirs = write_owner(tmp_path, dataclasses.replace(this_process(), pids="pid:[1]", pid=1))
    assert sweep_scratch(tmp_path, PREFIX) == scratch.Sweep((), (theirs,))


@pytest.mark.parametrize("owner_text", [None, "", "{not json", '{"pid": 1}', "[1, 2]"],
                         ids=["no-owner-file", "empty", "not-json", "fields-missing", "not-an-object"])
def test_a_folder_without_a_readable_owner_is_removed_only_once_old(tmp_path: Path, owner_text: str | None) -> None:
    folder = tmp_path / f"{PREFIX}orphan"
    folder.mkdir()
    if owner_text is not None:
        (folder / OWNER_FILE).write_text(owner_text, "utf-8")
    assert sweep_scratch(tmp_path, PREFIX).removed == ()  # young: its maker may be writing the owner now
    old = time.time() - scratch.ORPHAN_AGE_SECONDS - 60
    for path in (*folder.iterdir(), folder):
        os.utime(path, (old, old))
    assert sweep_scratch(tmp_path, PREFIX).removed == (folder,)


def test_other_folders_and_files_are_left_alone(tmp_path: Path) -> None:
    batch = tmp_path / ("0" * 64)
    batch.mkdir()
    (tmp_path / f"{PREFIX}a-file").write_text("not a folder")
    killed_owner(tmp_path)
    assert len(sweep_scratch(tmp_path, PREFIX).removed) == 1
    assert batch.is_dir() and (tmp_path / f"{PREFIX}a-file").exists()


def test_a_zombie_owns_nothing(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    while scratch.start_time(child.pid) is not None:  # exited, not yet reaped: a zombie
        time.sleep(0.01)
    assert Path(f"/proc/{child.pid}").exists()
    zombie = write_owner(tmp_path, dataclasses.replace(this_process(), pid=child.pid))
    assert sweep_scratch(tmp_path, PREFIX).removed == (zombie,)
    child.wait()
