"""The Airflow process of a runner session: `airflow` CLI commands in turn, in one process.

Started by civicnet.pipeline.runner.session with the home's Airflow environment. Reads one
request a line on stdin, {"args": [...], "log": path}, runs it as the `airflow` command would
(Airflow's own parser and command functions: `dags test` is Airflow's `dag.test()`, a DAG run
in the metadata database), with its stdout and stderr appended to the request's log, and
answers {"exit": code} on a line of its own stdout. Airflow, the in-process execution API and
the packages the tasks import are loaded once, for every command. Output between commands
goes to the session's process log (stderr as started).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Iterator
from typing import Any


def main() -> int:
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stdout is the replies' pipe: nothing else may write to it
    from airflow.cli import cli_parser
    from airflow.configuration import write_default_airflow_configuration_if_needed

    write_default_airflow_configuration_if_needed()  # what `airflow` does before any command
    parser = cli_parser.get_parser()
    for line in sys.stdin:
        request = json.loads(line)
        with output_to(request["log"]):
            code = run_command(parser, request["args"])
        replies.write(json.dumps({"exit": code}) + "\n")
    return 0


def run_command(parser: Any, args: list[str]) -> int:
    """`airflow ARGS` in this process; its exit code (a traceback or exit message in the output)."""
    try:
        parsed = parser.parse_args(args)
        parsed.func(parsed)
    except SystemExit as stop:  # `dags test` of a failed run raises SystemExit("DagRun failed")
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
        return 1
    except Exception:  # the process outlives a failed command, as the next `airflow` would start
        traceback.print_exc()
        return 1
    return 0


@contextlib.contextmanager
def output_to(log: str) -> Iterator[None]:
    """Point this process's stdout and stderr (the file descriptors, so Airflow's log handlers,
    warnings and libraries follow) at `log`, appending, for the block."""
    _flush()
    saved = os.dup(1), os.dup(2)
    target = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        _flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (target, *saved):
            os.close(fd)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


if __name__ == "__main__":
    sys.exit(main())
