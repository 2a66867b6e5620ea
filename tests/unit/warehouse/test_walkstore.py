"""A district's walk record: a node's totals are taken from it only while the node's file is as the
walk left it; anything else (a later write, a write-ahead log, another layout, a damaged record)
means the node is scanned again."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from pathlib import Path

import pytest

from warehouse.check import VerifyReport
from warehouse.reconcile import Totals
from warehouse.stores import node_path
from warehouse.walkstore import file_stamp, known_totals, read_walk_report, write_walk

COMMUNITY = "440304001001"
TOTALS = {"residents": {COMMUNITY: Totals(3, (Decimal("1.500000"),), -12345678901234567890)}}


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, Path]:
    """A home with one node file, and a walk record that saw it."""
    node = node_path(tmp_path, COMMUNITY)
    node.parent.mkdir(parents=True)
    node.write_bytes(b"node")
    record = tmp_path / "walk.json"
    stamp = file_stamp(node)
    assert stamp is not None
    write_walk(record, "layout-a", VerifyReport(dt.datetime(2026, 12, 2, tzinfo=dt.UTC), 1),
               {(COMMUNITY, "community"): TOTALS}, {COMMUNITY: stamp})
    return tmp_path, record


def test_an_unchanged_node_reads_its_totals_back_exactly(recorded: tuple[Path, Path]) -> None:
    home, record = recorded
    assert known_totals(record, home, "layout-a")(COMMUNITY, "community") == TOTALS
    assert known_totals(record, home, "layout-a")(COMMUNITY, "street") is None  # not recorded for that tier


def test_a_node_written_after_the_walk_is_scanned_again(recorded: tuple[Path, Path]) -> None:
    home, record = recorded
    node = node_path(home, COMMUNITY)
    info = node.stat()
    os.utime(node, ns=(info.st_atime_ns, info.st_mtime_ns + 1))  # same size, another time
    assert known_totals(record, home, "layout-a")(COMMUNITY, "community") is None


def test_a_node_with_a_write_ahead_log_is_scanned_again(recorded: tuple[Path, Path]) -> None:
    home, record = recorded
    node = node_path(home, COMMUNITY)
    node.with_name(f"{node.name}.wal").write_bytes(b"commits")
    assert known_totals(record, home, "layout-a")(COMMUNITY, "community") is None


def test_a_record_of_another_layout_counts_for_nothing(recorded: tuple[Path, Path]) -> None:
    home, record = recorded
    assert known_totals(record, home, "layout-b")(COMMUNITY, "community") is None


@pytest.mark.parametrize("text", ["", "{", "[]", '{"format": 1}', '{"format": 2, "report": {}}'])
def test_a_missing_or_damaged_record_gives_nothing(tmp_path: Path, text: str) -> None:
    record = tmp_path / "walk.json"
    assert read_walk_report(record) is None and known_totals(record, tmp_path, "x")(COMMUNITY, "community") is None
    record.write_text(text)
    assert read_walk_report(record) is None
    assert known_totals(record, tmp_path, "x")(COMMUNITY, "community") is None


def test_the_report_reads_back(recorded: tuple[Path, Path]) -> None:
    _, record = recorded
    report = read_walk_report(record)
    assert report is not None and report.nodes_checked == 1 and report.agrees
