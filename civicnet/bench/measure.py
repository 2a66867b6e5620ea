"""How the bench measures one side of one case: a subprocess, its process tree's memory, its writes.

Memory: the parent samples /proc every SAMPLE_SECONDS for the child and all its descendants (the
sync and verify workers are processes): the largest single RSS seen and the largest sum over the
processes alive at once. `os.wait4` adds the kernel's own high-water mark of the largest process
(the child or any worker it waited for), which a sample can miss; the largest is the max of both.
The sum is sampled only. Writes: every node file's size and mtime_ns before and after; a file new
or different counts as written, with its size after in its tier's bytes. The child reports the
bytes it and its reaped workers sent to storage (/proc/self/io write_bytes).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAMPLE_SECONDS = 0.05
PAGE = os.sysconf("SC_PAGE_SIZE")
TIERS = ("city", "district", "street", "community")


def _children_of() -> dict[int, list[int]]:
    """ppid → pids of every process now alive."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


@dataclass
class TreeSampler:
    """Peak RSS of the largest process and of the sum over the tree under `root`, sampled."""

    root: int
    largest: int = 0
    total: int = 0
    seen: set[int] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
        tree, pids, todo = _children_of(), [], [self.root]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            todo.extend(tree.get(pid, []))
        sizes = [_rss(p) for p in pids]
        self.seen.update(pids)
        self.largest = max(self.largest, *sizes)
        self.total = max(self.total, sum(sizes))

    def run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.sample()

    def stop(self) -> None:
        self._stop.set()


def node_files(home: Path) -> dict[Path, tuple[int, int]]:
    """(size, mtime_ns) of every node file (nodes/<tier>/<code>.duckdb) and its WAL, if any."""
    found: dict[Path, tuple[int, int]] = {}
    for tier in TIERS:
        for path in (home / "nodes" / tier).glob("*.duckdb*"):
            st = path.stat()
            found[path] = (st.st_size, st.st_mtime_ns)
    return found


def written(before: dict[Path, tuple[int, int]], after: dict[Path, tuple[int, int]]) -> dict[str, Any]:
    """Node files new or changed on disk, per tier: how many and their bytes after."""
    files = {tier: 0 for tier in TIERS}
    size = {tier: 0 for tier in TIERS}
    for path, stat in after.items():
        if before.get(path) != stat and path.suffix == ".duckdb":
            files[path.parent.name] += 1
            size[path.parent.name] += stat[0]
    return {"files": sum(files.values()), "files_per_tier": files, "bytes_per_tier": size}


def run_measured(cmd: list[str], env: dict[str, str] | None = None,
                 homes: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Run `cmd`, sampling its process tree; its last stdout line is its JSON result, to which the
    measurements are added. Raises with its stderr's end if it fails."""
    before = {h: node_files(h) for h in homes}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        sampler = TreeSampler(proc.pid)
        thread = threading.Thread(target=sampler.run, daemon=True)
        thread.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop()
        thread.join()
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        lines, errors = out.read().strip().splitlines(), err.read()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{errors[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    largest = max(sampler.largest, usage.ru_maxrss * 1024)
    result |= {"wall_s": wall, "peak_largest_mib": largest / 2**20, "peak_sum_mib": sampler.total / 2**20,
               "processes": len(sampler.seen)}
    if homes:
        result["written"] = {str(h): written(before[h], node_files(h)) for h in homes}
    return result


def write_bytes() -> int:
    """Bytes this process and the children it reaped sent to the storage layer (Linux)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0
