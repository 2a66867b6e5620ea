"""Singer connector: run a Singer tap as a subprocess and land one stream's records as JSON Lines.

A tap (https://hub.meltano.com/singer/spec) writes one JSON message per stdout line: SCHEMA,
RECORD and STATE. A STATE message says the tap has emitted every record it covers, so payload
boundaries follow STATE messages: once at least `batch_records` records are pending, the next
STATE closes a payload whose cursor is `{"singer_state": <that state>}` — the state saved after
landing covers exactly the records landed.

Records after the last STATE (a tap that ends without one, or emits records after it) are
yielded at the end with the last STATE seen, or the incoming state when there was none. They are
not covered by that state, so the tap emits them again next run; landing them twice is harmless
(identical content is one batch, identical rows count as unchanged at merge).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from connectors.feeds import SingerSource
from connectors.parse_limits import RepeatedKeyError, unique_keys
from connectors.payload import Payload
from connectors.secrets import env_name, get_connection
from schemas.errors import TerminalError, TransientError
from schemas.media import JSONL
from schemas.messages import excerpt_unless_data

log = logging.getLogger(__name__)

BATCH_RECORDS = 10_000
STDERR_LINES = 20
# words in a failing tap's stderr that mean its credentials were refused: retrying will not help
_AUTH_WORDS = ("authentication", "credentials", "401", "403")


class TapOutputError(TerminalError):
    """A tap wrote something that is not a Singer message, or messages out of order."""


class TapCredentialsError(TerminalError):
    """A tap refused the credentials of its Airflow connection."""


class TapFailedError(TransientError):
    """A tap exited with an error or ran past its timeout."""


class TapNotStartedError(TerminalError):
    """The tap's command cannot be started (not installed, not executable)."""


def redact(text: str, secrets: list[str]) -> str:
    """`text` with every secret value replaced by ***."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _write_private(path: Path, content: str) -> None:
    """Write a file only its owner can read (a tap config holds credentials)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(content)


@dataclass
class _Tap:
    """A running tap: its process, where its stderr goes, whether it ran out of time, what to redact."""

    process: subprocess.Popen[bytes]
    stderr_path: Path
    expired: threading.Event
    secrets: list[str]

    @property
    def stdout(self) -> IO[bytes]:
        assert self.process.stdout is not None
        return self.process.stdout

    def redact(self, text: str) -> str:
        """`text` without the secrets of the tap's config."""
        return redact(text, self.secrets)

    def stderr_tail(self) -> str:
        """The last lines the tap wrote to stderr, redacted."""
        text = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        return self.redact("\n".join(text.rstrip().splitlines()[-STDERR_LINES:]))


def _start(args: list[str], stderr_path: Path) -> subprocess.Popen[bytes]:
    """Start the tap process, stderr to a file so a chatty tap can never block on a full pipe."""
    # the tap gets its secrets through its config, not through our Airflow connections
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    try:
        with open(stderr_path, "wb") as stderr:
            return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=env)
    except OSError as err:
        raise TapNotStartedError(f"cannot start the Singer tap {args[0]!r}: {err.strerror}; "
                                 "fix 'command' in the feed config or install the tap") from None


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Kill the tap if it still runs and reap it."""
    if process.poll() is None:
        process.kill()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


@contextlib.contextmanager
def running_tap(command: list[str], config: Mapping[str, Any], singer_state: Any, timeout: float,
                secrets: list[str]) -> Iterator[_Tap]:
    """Start a tap with its config (and state) in private temp files; kill it and clean up on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="civicnet-singer-"))
    try:
        _write_private(workdir / "config.json", json.dumps(config))
        args = [*command, "--config", str(workdir / "config.json")]
        if singer_state is not None:
            _write_private(workdir / "state.json", json.dumps(singer_state))
            args += ["--state", str(workdir / "state.json")]
        process = _start(args, workdir / "stderr.log")
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            process.kill()

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            yield _Tap(process, workdir / "stderr.log", expired, secrets)
        finally:
            timer.cancel()
            _stop(process)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True)
class SingerConnector:
    """Runs `source.command` and yields the records of `source.stream` as JSON Lines payloads."""

    source: SingerSource
    key: tuple[str, ...] = ()
    batch_records: int = BATCH_RECORDS

    def fetch(self, state: Mapping[str, Any]) -> Iterator[Payload]:
        """Run the tap from `state["singer_state"]`; payloads end at STATE messages (see module doc).

        A `full_table` tap starts without state and its whole stream is one payload: one batch
        holds the whole register, as the volume gate of a `delivery: full` feed expects."""
        config, secrets = self._tap_config()
        command = [part.replace("{python}", sys.executable) for part in self.source.command]
        incoming = state.get("singer_state") if self.source.replication == "incremental" else None
        with running_tap(command, config, incoming, self.source.timeout_seconds, secrets) as tap:
            yield from self._payloads(tap, incoming)

    def _tap_config(self) -> tuple[dict[str, Any], list[str]]:
        """The feed's tap config plus the secrets of its Airflow connection, and those secret values."""
        config = dict(self.source.config)
        if self.source.conn_id is None:
            return config, []
        conn = get_connection(self.source.conn_id)
        config.update(conn.extra)
        if conn.login:
            config["login"] = conn.login
        if conn.password:
            config["password"] = conn.password
        values = [*conn.extra.values(), conn.login, conn.password]
        return config, [str(v) for v in values if v is not None and str(v)]

    def _payloads(self, tap: _Tap, incoming: Any) -> Iterator[Payload]:
        """Read the tap's messages; yield a payload at each STATE once enough records are pending."""
        pending: list[bytes] = []
        last_state, count = incoming, 0
        schema_seen = False
        for number, line in enumerate(tap.stdout, start=1):
            if not line.strip():
                continue
            message = self._message(tap, line, number)
            kind, stream = message.get("type"), message.get("stream")
            if kind == "SCHEMA" and stream == self.source.stream:
                self._check_schema(message)
                schema_seen = True
            elif kind == "RECORD" and stream == self.source.stream:
                if not schema_seen:
                    raise TapOutputError(f"Singer tap {self._name()}: line {number} is a RECORD of stream "
                                         f"{self.source.stream!r} before its SCHEMA; fix the tap")
                pending.append(json.dumps(message.get("record"), ensure_ascii=False).encode("utf-8") + b"\n")
            elif kind == "STATE":
                last_state = message.get("value")
                if len(pending) >= self.batch_records and self.source.replication == "incremental":
                    count += 1
                    yield self._payload(pending, last_state, count)
                    pending = []
        self._check_exit(tap)
        if pending:
            yield self._payload(pending, last_state, count + 1)

    def _message(self, tap: _Tap, line: bytes, number: int) -> dict[str, Any]:
        """One stdout line as a Singer message; anything else is refused with its line number."""
        try:
            message = json.loads(line, object_pairs_hook=unique_keys)
        except RepeatedKeyError as err:
            raise TapOutputError(f"Singer tap {self._name()}: stdout line {number}: {err}; which value counts would "
                                 "be a guess, so fix the tap to name each key once") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            excerpt = excerpt_unless_data(tap.redact(line[:80].decode("utf-8", errors="replace").rstrip()))
            raise TapOutputError(f"Singer tap {self._name()}: stdout line {number} is not a JSON message "
                                 f"({excerpt}); a tap must print only Singer messages to stdout") from None
        if not isinstance(message, dict):
            raise TapOutputError(f"Singer tap {self._name()}: stdout line {number} is not a JSON object; "
                                 "a tap must print only Singer messages to stdout")
        return message

    def _check_schema(self, message: Mapping[str, Any]) -> None:
        """The feed's key columns must be properties of the stream the tap declares."""
        properties = (message.get("schema") or {}).get("properties") or {}
        missing = [k for k in self.key if properties and k not in properties]
        if missing:
            raise TapOutputError(f"Singer tap {self._name()}: stream {self.source.stream!r} has no property "
                                 f"{missing} (its key_properties are {message.get('key_properties')}); fix "
                                 "'fields' in the feed config to map the tap's key")

    def _check_exit(self, tap: _Tap) -> None:
        """Raise if the tap timed out or exited non-zero; refused credentials are terminal."""
        code = tap.process.wait()
        if tap.expired.is_set():
            raise TapFailedError(f"Singer tap {self._name()} ran longer than timeout_seconds="
                                 f"{self.source.timeout_seconds:g} and was killed; it is retried next run")
        if code == 0:
            return
        tail = tap.stderr_tail()
        if any(word in tail.lower() for word in _AUTH_WORDS):
            conn_id = self.source.conn_id or ""
            raise TapCredentialsError(
                f"Singer tap {self._name()} refused the credentials of Airflow connection {conn_id!r} (exit code "
                f"{code}); fix the connection ({env_name(conn_id)} outside Airflow). Last stderr lines:\n{tail}")
        raise TapFailedError(f"Singer tap {self._name()} exited with code {code}; last stderr lines:\n{tail}")

    def _payload(self, lines: list[bytes], singer_state: Any, number: int) -> Payload:
        """A JSON Lines payload of `lines` whose cursor is the tap state that covers them."""
        cursor = {} if singer_state is None else {"singer_state": singer_state}
        log.info("Singer stream %s: payload %d with %d records", self.source.stream, number, len(lines))
        return Payload(name=f"{self.source.stream}-{number}.jsonl", data=b"".join(lines), media_type=JSONL,
                       encoding="utf-8", cursor=cursor)

    def _name(self) -> str:
        """How errors name the tap: its command (never its config, which holds secrets)."""
        return " ".join(self.source.command[:3])
