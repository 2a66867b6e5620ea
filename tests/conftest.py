"""Shared fixtures: a small Shenzhen built once per session through the real pipeline functions."""

from __future__ import annotations

import datetime as dt
import grp
import os
from pathlib import Path

import pytest

from civicnet import pipeline

AS_OF = dt.date(2021, 6, 30)
FEEDS = ("statistics_divisions", "public_security_residents", "civil_affairs_facilities")
TINY_SCALE = 0.0005  # about 8,700 residents: every district, street and most communities get some


def build_home(home: Path, scale: float = TINY_SCALE, changes: bool = False) -> Path:
    """Generate feeds, ingest every feed, sync the network; optionally apply the 1 % change drop too."""
    from civicnet.demo.data import generate_changes, generate_feeds

    generate_feeds(home, scale)
    for slug in FEEDS:
        pipeline.ingest_feed(home, slug, AS_OF)
    pipeline.sync_network(home)
    if changes:
        generate_changes(home, fraction=0.01)
        pipeline.ingest_feed(home, "public_security_residents", AS_OF)
        pipeline.sync_network(home)
    return home


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home after round one (initial loads) and round two (1 % changes, half of them moves).

    Read-only for tests: a test that changes a home builds its own with `build_home`."""
    return build_home(tmp_path_factory.mktemp("demo"), changes=True)


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
