"""Real sources of every connector kind, serving the same department records, for the conformance suite.

Each harness owns one source and can: `put` records (insert or replace by key), `pull` into a
home through the real landing code, `break_credentials` (returns the secret that must never be
shown), `break_server` and `heal`. Records use the health department's own column names, so
every kind is read with the shipped `health_stations` feed mapping.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import socket
import sqlite3
import sys
import threading
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from civicnet import pipeline
from connectors.feeds import Feed, FilesSource, SingerSource, SqlSource, load_feeds
from connectors.secrets import env_name
from warehouse import landing

COMMUNITY = "440304001018"  # 福田 南园街道 滨江社区
FEED = load_feeds()["health_stations"]
COLUMNS = ("station_no", "community_code", "station_name", "kind", "doctors", "nurses", "opened", "updated_at",
           "deleted")


def record(n: int, **overrides: Any) -> dict[str, Any]:
    """One station record as the department keeps it."""
    row: dict[str, Any] = {
        "station_no": f"H{COMMUNITY}{n:02d}", "community_code": COMMUNITY, "station_name": f"滨江社康站{n}",
        "kind": "社康站", "doctors": 3, "nurses": 2, "opened": "2015-03-01",
        "updated_at": "2021-06-01T08:00:00+08:00", "deleted": "false"}
    return row | overrides


class Harness(ABC):
    """One real source of one connector kind."""

    # False where the source itself re-sends records at the cursor boundary (Singer taps' bookmarks
    # are inclusive and opaque to us): such a re-pull lands them again, and the merge counts them unchanged
    dedupes_boundary = True

    def __init__(self, folder: Path, home: Path) -> None:
        self.folder, self.home = folder, home
        folder.mkdir(parents=True, exist_ok=True)
        self.feed: Feed = FEED.model_copy(update={"connector": self.source()})

    @abstractmethod
    def source(self) -> Any:
        """The feed's connector config for this source."""

    @abstractmethod
    def put(self, records: list[dict[str, Any]]) -> None:
        """Insert or replace records (by station_no) at the source."""

    def pull(self, home: Path) -> list[str]:
        """One pull through the real landing code."""
        return pipeline.land_feed(home, self.feed)

    def crash_after_landing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make the next pull die after its data has landed and before its cursor is committed."""
        def crash(*args: object) -> None:
            raise KeyboardInterrupt("killed after landing, before the cursor was saved")

        monkeypatch.setattr(landing, "save_feed_state", crash)

    def break_credentials(self) -> str:
        """Make the next pull use a wrong secret; returns that secret."""
        pytest.skip(f"{type(self).__name__}: this source has no credentials")

    def break_server(self) -> None:
        """Make the source fail like a server that is down, until `heal`."""
        pytest.skip(f"{type(self).__name__}: this source has no server")

    def heal(self) -> None:  # noqa: B027 - a source that cannot break needs no healing
        """Undo `break_server`."""

    def close(self) -> None:  # noqa: B027 - most sources hold nothing to release
        """Release the source."""


def _set_env(name: str, value: str) -> None:
    os.environ[name] = value


class FilesHarness(Harness):
    """A folder a department drops CSV files into (each put is a new file)."""

    def source(self) -> FilesSource:
        return FilesSource(kind="files", path=str(self.folder), pattern="*.csv", settle_seconds=0)

    def put(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        n = len(list(self.folder.glob("*.csv"))) + 1
        lines = [",".join(COLUMNS)] + [",".join(str(r[c]) for c in COLUMNS) for r in records]
        part = self.folder / f"stations-{n:03d}.csv.part"
        part.write_text("\n".join(lines) + "\n", "utf-8")
        part.replace(part.with_suffix(""))


class Relay:
    """A TCP relay on loopback in front of a database server: `stop` makes it refuse connections
    (a server that is down, seen over the real protocol), `start` brings it back on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self.start()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the blocked accept(); close() alone keeps listening
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        for conn in self._conns:
            conn.close()
        self._conns.clear()


class SqlHarness(Harness):
    """A department table in a real database server, reached through an Airflow connection."""

    server: ClassVar[tuple[str, int]]
    scheme: ClassVar[str]
    user: ClassVar[str]

    def __init__(self, folder: Path, home: Path) -> None:
        self.table = f"stations_{uuid.uuid4().hex[:8]}"
        self.conn_id = f"conformance_{self.table}"
        self.relay = Relay(self.server)
        self._connect(self.user, "")
        self.engine = sa.create_engine(f"{self.url_scheme}://{self.user}@{self.server[0]}:{self.server[1]}/test")
        self.meta = sa.MetaData()
        self.stations = sa.Table(
            self.table, self.meta, sa.Column("station_no", sa.String(20), primary_key=True),
            sa.Column("community_code", sa.String(12)), sa.Column("station_name", sa.String(100)),
            sa.Column("kind", sa.String(10)), sa.Column("doctors", sa.Integer), sa.Column("nurses", sa.Integer),
            sa.Column("opened", sa.Date), sa.Column("updated_at", sa.DateTime(timezone=True)),
            sa.Column("deleted", sa.Boolean))
        self.meta.create_all(self.engine)
        super().__init__(folder, home)

    url_scheme: ClassVar[str]

    def _connect(self, user: str, password: str) -> None:
        auth = user + (f":{password}" if password else "")
        _set_env(env_name(self.conn_id), f"{self.scheme}://{auth}@127.0.0.1:{self.relay.port}/test")

    def source(self) -> SqlSource:
        return SqlSource(kind="sql", conn_id=self.conn_id, table=self.table, cursor="updated_at", lag_seconds=3600)

    def _row(self, r: dict[str, Any]) -> dict[str, Any]:
        stamp = dt.datetime.fromisoformat(r["updated_at"])
        return r | {"opened": dt.date.fromisoformat(r["opened"]) if r["opened"] else None,
                    "updated_at": self._stamp(stamp), "deleted": r["deleted"] == "true"}

    def _stamp(self, stamp: dt.datetime) -> dt.datetime:
        return stamp

    def put(self, records: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            for r in records:
                conn.execute(self.stations.delete().where(self.stations.c.station_no == r["station_no"]))
                conn.execute(self.stations.insert().values(**self._row(r)))

    def break_credentials(self) -> str:
        secret = "not-the-password-" + uuid.uuid4().hex[:6]
        self._connect(self.bad_user, secret)
        return secret

    bad_user: ClassVar[str]

    def break_server(self) -> None:
        self.relay.stop()

    def heal(self) -> None:
        self.relay.start()

    def close(self) -> None:
        self.relay.stop()
        self.meta.drop_all(self.engine)
        self.engine.dispose()
        os.environ.pop(env_name(self.conn_id), None)


class PostgresHarness(SqlHarness):
    """The table in the real PostgreSQL (trust auth here, so bad credentials are a role that does not exist)."""

    server = ("127.0.0.1", 5432)
    scheme, url_scheme, user, bad_user = "postgresql", "postgresql+psycopg", "postgres", "no_such_clerk"


class MariaDbHarness(SqlHarness):
    """The table in the real MariaDB; MariaDB keeps DATETIME without a zone, so times go in as Beijing time."""

    server = ("127.0.0.1", 3306)
    scheme, url_scheme, user, bad_user = "mysql", "mysql+pymysql", "root", "root"

    def _stamp(self, stamp: dt.datetime) -> dt.datetime:
        return stamp.replace(tzinfo=None)


class SqliteHarness(Harness):
    """The table in an SQLite file; a server error is the file locked by another writer."""

    def __init__(self, folder: Path, home: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "dept.sqlite"
        with sqlite3.connect(self.path) as db:
            db.execute("""CREATE TABLE stations (station_no TEXT PRIMARY KEY, community_code TEXT, station_name TEXT,
                          kind TEXT, doctors INTEGER, nurses INTEGER, opened TEXT, updated_at TEXT, deleted TEXT)""")
        db.close()
        self.lock: sqlite3.Connection | None = None
        super().__init__(folder, home)

    def source(self) -> SqlSource:
        return SqlSource(kind="sql", url=f"sqlite:///{self.path}", table="stations", cursor="updated_at",
                         lag_seconds=3600)

    def put(self, records: list[dict[str, Any]]) -> None:
        with sqlite3.connect(self.path) as db:
            db.executemany(f"INSERT OR REPLACE INTO stations VALUES ({', '.join('?' * len(COLUMNS))})",
                           [[r[c] if r[c] != "" else None for c in COLUMNS] for r in records])
        db.close()

    def break_server(self) -> None:
        self.lock = sqlite3.connect(self.path, timeout=0)
        self.lock.execute("BEGIN EXCLUSIVE")

    def heal(self) -> None:
        if self.lock is not None:
            self.lock.rollback()
            self.lock.close()
            self.lock = None

    def close(self) -> None:
        self.heal()


class SingerHarness(Harness):
    """A real Singer tap subprocess (tests/conformance/tap_records.py) reading a JSON Lines register."""

    TOKEN = "tap-token-" + uuid.uuid4().hex[:8]
    dedupes_boundary = False

    def __init__(self, folder: Path, home: Path) -> None:
        self.conn_id = f"conformance_tap_{uuid.uuid4().hex[:8]}"
        self.records: dict[str, dict[str, Any]] = {}
        super().__init__(folder, home)
        self._token(self.TOKEN)

    def _token(self, token: str) -> None:
        expected = hashlib.sha256(self.TOKEN.encode()).hexdigest()
        _set_env(env_name(self.conn_id), json.dumps(
            {"conn_type": "generic", "extra": {"token": token, "expected_token_sha256": expected}}))

    def source(self) -> SingerSource:
        tap = Path(__file__).with_name("tap_records.py")
        return SingerSource(kind="singer", command=[sys.executable, str(tap)], stream="health_stations",
                            conn_id=self.conn_id,
                            config={"source": str(self.folder / "register.jsonl"), "stream": "health_stations",
                                    "key": "station_no", "cursor": "updated_at",
                                    "fail_flag": str(self.folder / "down")})

    def put(self, records: list[dict[str, Any]]) -> None:
        self.records |= {r["station_no"]: r for r in records}
        lines = [json.dumps(r, ensure_ascii=False) for r in self.records.values()]
        (self.folder / "register.jsonl").write_text("\n".join(lines) + "\n", "utf-8")

    def break_credentials(self) -> str:
        secret = "wrong-" + uuid.uuid4().hex[:8]
        self._token(secret)
        return secret

    def break_server(self) -> None:
        (self.folder / "down").touch()

    def heal(self) -> None:
        (self.folder / "down").unlink(missing_ok=True)

    def close(self) -> None:
        os.environ.pop(env_name(self.conn_id), None)


class RestHarness(Harness):
    """The department's REST API on loopback (civicnet.demo.departments.api), over real HTTP with a bearer token."""

    def __init__(self, folder: Path, home: Path) -> None:
        from civicnet.demo.departments.api import DemoApi

        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "stations.jsonl"
        self.path.write_text("", "utf-8")
        self.records: dict[str, dict[str, Any]] = {}
        self.token = "api-token-" + uuid.uuid4().hex[:8]
        self.conn_id = f"conformance_api_{uuid.uuid4().hex[:8]}"
        self.api = DemoApi(self.path, self.token, 0).start()
        self._token(self.token)
        super().__init__(folder, home)

    def _token(self, token: str) -> None:
        port = int(self.api.url.rsplit(":", 1)[1])
        _set_env(env_name(self.conn_id), json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": port, "extra": {"token": token}}))

    def source(self) -> Any:
        from connectors.feeds import RestSource

        shipped = FEED.connector
        return RestSource.model_validate(shipped.model_dump() | {
            "conn_id": self.conn_id, "max_retries": 2, "backoff_seconds": 0})

    def put(self, records: list[dict[str, Any]]) -> None:
        self.records |= {r["station_no"]: r | {"deleted": r["deleted"] == "true"} for r in records}
        lines = [json.dumps(r, ensure_ascii=False) for r in self.records.values()]
        self.path.write_text("".join(line + "\n" for line in lines), "utf-8")

    def break_credentials(self) -> str:
        secret = "wrong-" + uuid.uuid4().hex[:8]
        self._token(secret)
        return secret

    def break_server(self) -> None:
        self.api.inject(503, times=3)  # one more than the retries: the pull gives up

    def close(self) -> None:
        self.api.stop()
        os.environ.pop(env_name(self.conn_id), None)


class PushHarness(Harness):
    """The push gateway (uvicorn on loopback): the health department pushes its changed records as
    a CSV file; a pull is one upload of what changed since the last one, read as the client would
    (401/403/413/422 terminal, 5xx or no answer transient)."""

    def __init__(self, folder: Path, home: Path) -> None:
        from civicnet.gateway.app import GatewayServer
        from civicnet.gateway.trigger import NoTrigger
        from connectors.push.senders import add_sender

        self.pending: dict[str, dict[str, Any]] = {}  # changed since the last receipt, latest version per key
        super().__init__(folder, home)
        self.token = add_sender(home, "health-dept", "department", "health")
        self.server = GatewayServer(home, NoTrigger(), {self.feed.slug: self.feed}).start()

    def source(self) -> Any:
        from connectors.feeds import PushSource

        return PushSource(kind="push")

    def put(self, records: list[dict[str, Any]]) -> None:
        self.pending |= {r["station_no"]: r for r in records}

    def pull(self, home: Path) -> list[str]:
        import requests

        from schemas.errors import TerminalError, TransientError

        assert home == self.home, "the gateway serves the home it was started on"
        if not self.pending:
            return []
        lines = [",".join(COLUMNS)] + [",".join(str(r[c]) for c in COLUMNS) for r in self.pending.values()]
        try:
            answer = requests.post(f"{self.server.url}/v1/datasets/health_stations/batches",
                                   data="\n".join(lines).encode(), timeout=30,
                                   headers={"Authorization": f"Bearer {self.token}", "Content-Type": "text/csv",
                                            "X-Filename": "stations.csv"})
        except requests.ConnectionError as err:
            raise TransientError(f"the gateway did not answer: {err}") from None
        if answer.status_code >= 500:
            raise TransientError(f"the gateway failed ({answer.status_code}): {answer.json()['error']}")
        if answer.status_code >= 400:
            raise TerminalError(f"the gateway refused the file ({answer.status_code}): {answer.json()['error']}")
        self.pending = {}
        return [] if answer.json().get("replayed") else [answer.json()["batch_id"]]

    def crash_after_landing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The gateway dies after landing, before the receipt is written (the sender saw no receipt)."""
        from warehouse import landing

        original = landing.land

        def land_then_crash(*args: Any) -> bool:
            original(*args)
            raise RuntimeError("killed after landing, before the receipt was written")

        monkeypatch.setattr(landing, "land", land_then_crash)

    def break_credentials(self) -> str:
        secret = "wrong-" + uuid.uuid4().hex[:8]
        self.token = secret
        return secret

    def break_server(self) -> None:
        self.server.stop()

    def heal(self) -> None:
        self.server.start()

    def close(self) -> None:
        self.server.stop()


HARNESSES: dict[str, type[Harness]] = {
    "files": FilesHarness, "sql-sqlite": SqliteHarness, "sql-postgresql": PostgresHarness,
    "sql-mariadb": MariaDbHarness, "singer": SingerHarness, "rest": RestHarness,
    "push": PushHarness,
}
