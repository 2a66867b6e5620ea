"""The processes of Airflow as a service: started in their own process group, recorded, stopped.

Each component runs in a session (and so a process group) of its own, its output appended to
its log. Its record (`run/<name>.json`: pid, start time, port, log, command) names it for `status`
and `down`; the start time, compared with the kernel's, tells our process from a later one that
reused the pid. Stopping sends SIGTERM to the group and to every descendant seen before (Celery's
and Airflow's task processes may start sessions of their own), waits, then SIGKILLs what is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from schemas.homefiles import current_modes, make_folder, open_private, write_atomic

STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ProcessRecord:
    """A started component: what `status` and `down` need to find it again."""

    name: str
    pid: int
    started: float  # the process's start time (psutil's create_time), against pid reuse
    log: str
    argv: tuple[str, ...]
    port: int | None = None


def record_file(run: Path, name: str) -> Path:
    """Where a component's record is kept."""
    return run / f"{name}.json"


def read_record(run: Path, name: str) -> ProcessRecord | None:
    """A component's record, or None if there is none (or it cannot be read: then it is stale)."""
    try:
        raw = json.loads(record_file(run, name).read_text("utf-8"))
        return ProcessRecord(raw["name"], int(raw["pid"]), float(raw["started"]), raw["log"],
                             tuple(raw["argv"]), raw.get("port"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_running(record: ProcessRecord) -> bool:
    """Whether the recorded process is alive and is the one we started (not a reused pid)."""
    try:
        process = psutil.Process(record.pid)
        same = abs(process.create_time() - record.started) < 0.05
        return same and bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def start(run: Path, name: str, argv: list[str], env: dict[str, str], log: Path,
          port: int | None = None) -> ProcessRecord:
    """Start one component in its own session, its output appended to `log`; record it."""
    make_folder(run)
    make_folder(log.parent)
    with open_private(log, append=True) as out:
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, umask=current_modes().umask)
    started = psutil.Process(process.pid).create_time()
    record = ProcessRecord(name, process.pid, started, str(log), tuple(argv), port)
    write_atomic(record_file(run, name), json.dumps(asdict(record), indent=1))
    return record


def exited(record: ProcessRecord) -> int | None:
    """The exit code of a component this process started and that has ended (reaped), else None."""
    try:
        pid, status = os.waitpid(record.pid, os.WNOHANG)
    except ChildProcessError:  # not our child (started by an earlier `up`) or reaped already
        return None if is_running(record) else -1
    return os.waitstatus_to_exitcode(status) if pid else None


def stop(run: Path, record: ProcessRecord, timeout: float = STOP_TIMEOUT_S) -> bool:
    """Stop a component: its group and every descendant, TERM then KILL after `timeout`; remove its
    record. Whether it was running."""
    running = is_running(record)
    if running:
        family = [psutil.Process(record.pid)]
        with contextlib.suppress(psutil.Error):
            family += family[0].children(recursive=True)
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            _signal(record.pid, family, sig)
            _, alive = psutil.wait_procs(family, timeout=wait)
            if not alive:
                break
        with contextlib.suppress(ChildProcessError):
            os.waitpid(record.pid, os.WNOHANG)  # reap it if this process started it
    record_file(run, record.name).unlink(missing_ok=True)
    return running


def _signal(group: int, family: list[psutil.Process], sig: signal.Signals) -> None:
    """Signal the group once (Airflow's supervisors take a second SIGTERM as "force exit"), and the
    descendants that left it (a task in a session of its own); SIGKILL goes to every one."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)  # its own session: the group id is its pid
    for process in family:
        with contextlib.suppress(psutil.Error, OSError):
            if sig == signal.SIGKILL or os.getpgid(process.pid) != group:
                process.send_signal(sig)
