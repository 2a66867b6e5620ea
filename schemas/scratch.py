"""Scratch folders owned by a process (DuckDB's spill during a merge, say): made with the owner's
identity inside, and swept by the next process that makes one, once their owner is gone.

A process killed with SIGKILL (or by the OOM killer) never runs its `finally`, so its scratch folder
would stay for ever. Each folder holds an `owner` file: the pid, the process's start time (field 22
of /proc/<pid>/stat, so a pid reused by another process is not taken for the owner), the boot, the
host and the pid namespace. `sweep_scratch` removes a folder whose owner is provably gone and never
one a live process owns; what it cannot judge (another host's, another container's) it keeps and
reports.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from schemas.homefiles import write_atomic

OWNER_FILE = "owner"
# A folder without a readable owner file (its maker killed between making it and writing the file,
# or made by a civicnet from before owner files) is removed once nothing in it changed for this long:
# its maker wrote the owner within microseconds, or it predates them; kept, it would stay for ever.
ORPHAN_AGE_SECONDS = 3600.0
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class Owner:
    """Who made a scratch folder: enough to tell whether that process still runs."""

    pid: int
    started: str  # clock ticks after boot at which the process started; "" where /proc is not there
    boot: str  # the kernel's boot id; "" where unknown
    host: str
    pids: str = ""  # the pid namespace (containers on one kernel each number their own); "" where unknown

    def to_json(self) -> str:
        """The owner as the `owner` file holds it."""
        return json.dumps({"pid": self.pid, "started": self.started, "boot": self.boot, "host": self.host,
                           "pids": self.pids})

    @classmethod
    def from_json(cls, text: str) -> Owner:
        """The owner an `owner` file names (ValueError, KeyError or TypeError if it is not one)."""
        raw = json.loads(text)
        return cls(int(raw["pid"]), str(raw["started"]), str(raw["boot"]), str(raw["host"]), str(raw["pids"]))


@dataclass(frozen=True)
class Sweep:
    """What `sweep_scratch` did: the folders it removed, and those it kept without knowing their owner
    to be alive (another host's, which its pid cannot tell; one it could not remove)."""

    removed: tuple[Path, ...]
    unjudged: tuple[Path, ...]


def _read(path: Path) -> str:
    try:
        return path.read_text("utf-8").strip()
    except OSError:
        return ""


def start_time(pid: int) -> str | None:
    """When process `pid` started (field 22 of /proc/<pid>/stat); None if no such process runs (a zombie
    has ended: only its exit status is left), "" if the system has no /proc."""
    if not Path("/proc/self/stat").exists():
        return ""
    stat = _read(Path(f"/proc/{pid}/stat"))
    fields = stat[stat.rindex(")") + 2:].split() if stat else []  # "pid (comm) state ...": comm may hold ")"
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]  # field 22; fields[0] is field 3


def this_process() -> Owner:
    """The identity of the calling process."""
    pid = os.getpid()
    try:
        pids = os.readlink("/proc/self/ns/pid")
    except OSError:
        pids = ""
    return Owner(pid, start_time(pid) or "", _read(_BOOT_ID), socket.gethostname(), pids)


def owner_alive(owner: Owner, here: Owner) -> bool | None:
    """Whether the owner still runs: True, False, or None where this process cannot tell (another host's,
    or another container's: its pids are not ours to look up)."""
    if owner.host != here.host:
        return None
    if owner.boot and here.boot and owner.boot != here.boot:
        return False  # the machine restarted since: every process of that boot is gone
    if owner.pids != here.pids:
        return None
    started = start_time(owner.pid)
    if started is None:
        return False
    if started and owner.started:
        return started == owner.started  # else the pid now names another process
    try:
        os.kill(owner.pid, 0)  # no /proc: whether the pid runs at all is all there is to know
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_scratch(parent: Path, prefix: str) -> Path:
    """A new scratch folder in `parent` (private to its owner, as tempfile makes it), owned by this process."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    write_atomic(folder / OWNER_FILE, this_process().to_json())
    return folder


def _last_change(folder: Path) -> float:
    """The newest mtime of the folder and its entries (DuckDB writes its spill files in it)."""
    times = [folder.stat().st_mtime]
    for entry in os.scandir(folder):
        try:
            times.append(entry.stat(follow_symlinks=False).st_mtime)
        except OSError:
            continue
    return max(times)


def _gone(folder: Path, here: Owner, now: float) -> bool | None:
    """Whether a scratch folder's owner is gone: True, False, or None if this process cannot tell."""
    try:
        owner = Owner.from_json((folder / OWNER_FILE).read_text("utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        try:
            return now - _last_change(folder) > ORPHAN_AGE_SECONDS
        except FileNotFoundError:
            return False  # removed meanwhile
        except OSError:
            return None  # not ours to look into
    alive = owner_alive(owner, here)
    return None if alive is None else not alive


def sweep_scratch(parent: Path, prefix: str) -> Sweep:
    """Remove the scratch folders in `parent` named `prefix*` whose owner is gone (dead, its pid reused,
    or of an earlier boot), and those without an owner file untouched for ORPHAN_AGE_SECONDS. Folders of
    a live process stay; those of another host stay too, reported as unjudged."""
    here, now = this_process(), time.time()
    removed: list[Path] = []
    unjudged: list[Path] = []
    for folder in sorted(parent.glob(f"{prefix}*")):
        if not folder.is_dir() or folder.is_symlink():
            continue
        gone = _gone(folder, here, now)
        if gone:
            shutil.rmtree(folder, ignore_errors=True)  # another sweeper may be removing it too
            (unjudged if folder.exists() else removed).append(folder)
        elif gone is None:
            unjudged.append(folder)
    return Sweep(tuple(removed), tuple(unjudged))
