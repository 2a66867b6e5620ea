"""DAG runs through one Airflow process per home: `run_dag`, `dag_session`, `ensure_metadata`.

Most of an `airflow dags test` process's life is Airflow's own start-up, not the tasks' work:
Python and Airflow's imports, the in-process execution API it starts for the first task, and our
packages (DuckDB, Arrow, Great Expectations) imported again by the first task that needs them.
A session starts one Airflow process (civicnet.pipeline.runner.worker) the first time it is
asked for anything and hands it the same `airflow` commands, one at a time (`db migrate`,
`pools set`, `dags test <dag_id>`): each DAG run is still a run of Airflow's own `dags test`,
recorded in the home's metadata database, with its output appended to that DAG's log as
before. Inside `with dag_session(home):` every `run_dag` on the home uses that one process
(the demo, the gateway's `dags-test` trigger); outside it, `run_dag` opens a session of its own.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from civicnet.pipeline.pools import pool_specs, pools_json
from civicnet.pipeline.runner.env import airflow_env
from schemas.errors import TerminalError
from schemas.homefiles import current_modes, make_folder, open_private, write_atomic
from schemas.layout import airflow_home, airflow_logs

WORKER = "civicnet.pipeline.runner.worker"
READY = ".civicnet-ready"  # the stamp of a home whose metadata database and pools exist (it names them)


class DagRunFailedError(TerminalError):
    """An Airflow DAG run did not succeed."""


class AirflowSession:
    """One Airflow process for a home, started on first use; its commands run one at a time."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._lock = threading.Lock()  # one command at a time (the gateway's trigger runs in a thread)
        self._process: subprocess.Popen[str] | None = None
        self._ready = False

    def command(self, args: list[str], log: Path) -> int:
        """Run `airflow ARGS` in the session's process, its output appended to `log`; its exit code."""
        make_folder(log.parent)
        open_private(log, append=True).close()  # the log gets the home's modes; the process appends
        request = json.dumps({"args": args, "log": str(log)}) + "\n"
        with self._lock:
            process = self._started()
            assert process.stdin is not None and process.stdout is not None
            try:
                process.stdin.write(request)
                process.stdin.flush()
                answer = process.stdout.readline()
            except OSError:
                answer = ""
        if not answer:
            raise DagRunFailedError(
                f"the Airflow process of {self.home} ended (exit {process.wait()}) during `airflow {' '.join(args)}`; "
                f"see {log} and {self.process_log}:\n{_tail(self.process_log)}")
        return int(json.loads(answer)["exit"])

    @property
    def process_log(self) -> Path:
        """Where the session's process writes what belongs to no command (its start-up, its end)."""
        return airflow_logs(self.home) / "runner.log"

    def _started(self) -> subprocess.Popen[str]:
        if self._process is None:
            make_folder(self.process_log.parent)
            with open_private(self.process_log, append=True) as out:
                # Airflow's metadata database, config and logs are written under the home's umask
                self._process = subprocess.Popen(
                    [sys.executable, "-m", WORKER], env=airflow_env(self.home), stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=out, text=True, umask=current_modes().umask)
        return self._process

    def ensure_metadata(self) -> None:
        """Create the SQLite metadata database and the single-writer pools once per home (again when
        the pools changed: a home stamped by an older civicnet gets the district pools)."""
        stamp = airflow_home(self.home) / READY
        pools = pools_json(pool_specs())
        if self._ready or _stamped(stamp, pools):
            self._ready = True
            return
        make_folder(stamp.parent)
        log = airflow_logs(self.home) / "setup.log"
        if self.command(["db", "migrate"], log) != 0:
            raise DagRunFailedError(f"airflow db migrate failed; see {log}:\n{_tail(log)}")
        listed = airflow_home(self.home) / "pools.json"
        write_atomic(listed, pools)
        if self.command(["pools", "import", str(listed)], log) != 0:
            raise DagRunFailedError(f"could not create the pools of {listed}; see {log}:\n{_tail(log)}")
        write_atomic(stamp, pools)
        self._ready = True

    def run_dag(self, dag_id: str) -> Path:
        """Run one DAG to completion with `airflow dags test`; returns its log, raises if it failed."""
        self.ensure_metadata()
        log = airflow_logs(self.home) / f"{dag_id}.log"
        start = log.stat().st_size if log.exists() else 0  # the log keeps earlier runs: read only this one
        code = self.command(["dags", "test", dag_id], log)
        this_run = log.read_bytes()[start:].decode("utf-8", errors="replace")
        if code != 0 or "state=failed" in this_run.split("DagRun Finished")[-1][:2000]:
            reasons = task_failures(this_run)
            said = "\n".join(f"  {r}" for r in reasons) if reasons else _tail(log)
            raise DagRunFailedError(f"DAG {dag_id} failed (exit {code}); see {log}:\n{said}")
        return log

    def close(self) -> None:
        """End the process (it finishes the command it runs first)."""
        process, self._process = self._process, None
        if process is None:
            return
        _close_quietly(process.stdin)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        _close_quietly(process.stdout)


_sessions: dict[Path, AirflowSession] = {}
_sessions_lock = threading.Lock()


@contextlib.contextmanager
def dag_session(home: Path) -> Iterator[AirflowSession]:
    """Every `run_dag` on `home` inside the block runs in one Airflow process, ended after it.

    The process starts at the first command, with this process's environment then (define the
    AIRFLOW_CONN_* connections before it). Inside an open session of the home, the open one."""
    key = home.resolve()
    with _sessions_lock:
        outer = _sessions.get(key)
        if outer is None:
            _sessions[key] = session = AirflowSession(home)
    if outer is not None:
        yield outer
        return
    try:
        yield session
    finally:
        with _sessions_lock:
            _sessions.pop(key, None)
        session.close()


def run_dag(home: Path, dag_id: str) -> Path:
    """Run one DAG to completion with `airflow dags test` (in the home's open session, if any);
    returns its log, raises DagRunFailedError, naming its tasks' terminal errors, if it failed."""
    with dag_session(home) as session:
        return session.run_dag(dag_id)


def ensure_metadata(home: Path) -> None:
    """Create the SQLite metadata database and the single-writer pool once."""
    with dag_session(home) as session:
        session.ensure_metadata()


def task_failures(text: str) -> list[str]:
    """The messages of the terminal civicnet errors a run's tasks failed with, once each, in order."""
    found = re.findall(r"^airflow\.sdk\.exceptions\.AirflowFailException: (.+)$", text, flags=re.MULTILINE)
    return list(dict.fromkeys(found))


def _stamped(stamp: Path, pools: str) -> bool:
    """Whether the stamp says these pools were created (an older stamp, 'ok', names none)."""
    try:
        return stamp.read_text("utf-8") == pools
    except OSError:
        return False


def _tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text("utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _close_quietly(stream: IO[str] | None) -> None:
    if stream is not None:
        with contextlib.suppress(OSError):
            stream.close()
