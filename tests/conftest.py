"""Shared fixtures: a small Shenzhen built once per session through the real pipeline functions.

Building a home (feeds, three ingests with their GX gates, a sync of 899 nodes) takes most of a
minute; copying one takes about a second. So round one is built once (`round_one_home`, never
changed) and every test that changes a home works on its own copy (`home_copy`); the session's
`demo_home` is such a copy taken on through round two."""

from __future__ import annotations

import datetime as dt
import grp
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from civicnet import pipeline

AS_OF = dt.date(2021, 6, 30)
FEEDS = ("statistics_divisions", "public_security_residents", "civil_affairs_facilities")
TINY_SCALE = 0.0005  # about 8,700 residents: every district, street and most communities get some


def build_home(home: Path, scale: float = TINY_SCALE, changes: bool = False) -> Path:
    """Generate feeds, ingest every feed, sync the network; optionally apply the 1 % change drop too."""
    from civicnet.demo.data import generate_feeds

    generate_feeds(home, scale)
    for slug in FEEDS:
        pipeline.ingest_feed(home, slug, AS_OF)
    pipeline.sync_network(home)
    return apply_changes(home) if changes else home


def apply_changes(home: Path) -> Path:
    """Round two on a home after round one: the 1 % change drop (half of it moves), ingested and synced."""
    from civicnet.demo.data import generate_changes

    generate_changes(home, fraction=0.01)
    pipeline.ingest_feed(home, "public_security_residents", AS_OF)
    pipeline.sync_network(home)
    return home


def copy_home(source: Path, dest: Path) -> Path:
    """Copy a home into `dest` (new or empty) with its files' modes and times, as a moved home is."""
    shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)
    return dest


@pytest.fixture(scope="session")
def round_one_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home after round one (initial loads, synced), built once. Never changed: tests that change
    a home take a copy with `home_copy`."""
    return build_home(tmp_path_factory.mktemp("round_one"))


@pytest.fixture(scope="session")
def home_copy(round_one_home: Path) -> Callable[[Path], Path]:
    """`home_copy(dest)`: a copy of the round-one home in `dest`, the caller's to change."""
    return lambda dest: copy_home(round_one_home, dest)


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory, home_copy: Callable[[Path], Path]) -> Path:
    """A home after round one (initial loads) and round two (1 % changes, half of them moves).

    Read-only for tests: a test that changes a home works on a copy (`home_copy`, `copy_home`)."""
    return apply_changes(home_copy(tmp_path_factory.mktemp("demo")))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with slow tests run first, each module's tests in their own order: with `make test`'s
    two workers (pytest-xdist, one module at a time to a worker) the long modules start at once
    instead of being left for the end."""
    slow = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow)


def share_group() -> str:
    """A group this user may give the home to (CIVICNET_SHARE_GROUP in tests): another than its own if
    root or a member of several, else its primary group."""
    if os.geteuid() == 0:
        for name in ("users", "nogroup", "daemon"):
            try:
                return grp.getgrnam(name).gr_name
            except KeyError:
                continue
    others = [g for g in os.getgroups() if g != os.getgid()]
    return grp.getgrgid(others[0] if others else os.getgid()).gr_name


@dataclass(frozen=True)
class S3Server:
    """moto's S3 server on loopback, for the whole session: the stand-in for a city's object store, over
    the real S3 protocol (s3fs talks to it as to MinIO). Each test makes its own bucket (`bucket()`)."""

    endpoint: str

    def options(self) -> dict[str, object]:
        """s3fs storage options that reach it (moto takes any keys)."""
        return {"endpoint_url": self.endpoint, "key": "civicnet-test-key", "secret": "civicnet-test-secret",
                "client_kwargs": {"region_name": "us-west-2"}}

    def bucket(self) -> str:
        """A new, empty bucket's name."""
        import uuid

        import s3fs

        name = f"civicnet-{uuid.uuid4().hex[:12]}"
        s3fs.S3FileSystem(skip_instance_cache=True, **self.options()).mkdir(name)  # type: ignore[arg-type]
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's ThreadedMotoServer on 127.0.0.1 (a free port), stopped at the end of the session."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()
