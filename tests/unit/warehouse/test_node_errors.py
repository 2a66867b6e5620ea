"""DuckDB's errors about a node file, said once in warehouse.node: a node another process holds
is locked (transient, naming the holder), a damaged file is NodeCorruptError with the rebuild fix,
a full disk is DiskFullError naming the disk, and a failed rollback does not hide why."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from schemas.errors import TerminalError, TransientError
from schemas.homefiles import copy_atomic, write_atomic
from warehouse.node import (
    DiskFullError,
    NodeCorruptError,
    NodeLockedError,
    attach,
    connect,
    detach,
    node_errors,
    transaction,
)

CODE = "440304001018"


@pytest.fixture
def node(tmp_path: Path) -> Path:
    """A small real node-like DuckDB file named like a community node."""
    path = tmp_path / "community" / f"{CODE}.duckdb"
    con = connect()
    attach(con, path, "n")
    con.execute("CREATE TABLE n.t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(20000)")
    detach(con, "n")
    con.close()
    return path


@pytest.fixture
def holder(node: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process with the node open for writing, as an analyst's `duckdb.connect(path)`."""
    proc = subprocess.Popen([sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(node)!r}); "
                             "print('open', flush=True); sys.stdin.read()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
    yield proc
    proc.kill()
    proc.wait()


def attach_error(path: Path, read_only: bool) -> Exception:
    """The error of opening a node and reading it, as the sync and verify walks do."""
    con = connect()
    try:
        with pytest.raises(Exception) as caught, node_errors(path):
            attach(con, path, "n", read_only=read_only)
            con.execute("SELECT count(*), max(s) FROM n.t").fetchall()
        # the connection stays usable for the other nodes of the walk
        assert con.execute("SELECT 1").fetchone() == (1,)
    finally:
        con.close()
    return caught.value


@pytest.mark.parametrize("read_only", [True, False], ids=["read-only", "read-write"])
def test_a_node_held_by_another_process_is_locked_naming_the_holder(node: Path, holder: Any, read_only: bool) -> None:
    err = attach_error(node, read_only)
    assert isinstance(err, NodeLockedError) and isinstance(err, TransientError)
    assert f"PID {holder.pid}" in str(err) and CODE in str(err) and "close" in str(err)


def random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def bad_checksum(path: Path) -> None:
    """The headers kept, every block after them overwritten (DuckDB finds a checksum mismatch)."""
    data = path.read_bytes()
    path.write_bytes(data[:8192] + os.urandom(len(data) - 8192))


@pytest.mark.parametrize("damage", [random_bytes, truncated, bad_checksum], ids=lambda f: f.__name__)
@pytest.mark.parametrize("read_only", [True, False], ids=["read-only", "read-write"])
def test_a_damaged_node_is_corrupt_with_the_rebuild_fix(node: Path, damage: Any, read_only: bool) -> None:
    damage(node)
    err = attach_error(node, read_only)
    assert isinstance(err, NodeCorruptError) and isinstance(err, TerminalError)
    assert f"civicnet rebuild-node {CODE}" in str(err) and "never deleted" in str(err)


class FullDiskOnCommit:
    """A real connection whose COMMIT fails as DuckDB's does on a full disk: DuckDB rolls the
    transaction back itself and raises, so the ROLLBACK that follows finds no transaction."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self.con, self.path = con, path

    def execute(self, sql: str, *params: Any) -> Any:
        if sql == "COMMIT":
            self.con.execute("ROLLBACK")
            raise duckdb.TransactionException(
                f'TransactionContext Error: Failed to commit: Could not write file "{self.path}": '
                "No space left on device")
        return self.con.execute(sql, *params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)


def test_a_full_disk_at_commit_says_so_and_the_failed_rollback_does_not_hide_it(node: Path) -> None:
    con = connect()
    try:
        attach(con, node, "n")
        full: Any = FullDiskOnCommit(con, node)
        with pytest.raises(DiskFullError) as caught, transaction(full):
            full.execute("INSERT INTO n.t VALUES (-1, 'x')")
        text = str(caught.value)
        assert f"the disk of {node} is full" in text and "MiB free" in text and "Free space" in text
        assert "cannot rollback" not in text
        assert "No space left on device" in str(caught.value.__cause__)  # raised from the original
        assert con.execute("SELECT count(*) FROM n.t WHERE i = -1").fetchone() == (0,)  # nothing committed
    finally:
        con.close()


def no_space(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_while_publishing_an_extract_says_so_and_leaves_the_old_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from warehouse.extract import extract_path, publish_extract
    from warehouse.stores import node_path

    home = tmp_path / "home"
    node_file, extract = node_path(home, CODE), extract_path(home, CODE)
    node_file.parent.mkdir(parents=True)
    node_file.write_bytes(b"new node")
    extract.parent.mkdir(parents=True)
    write_atomic(extract, b"old extract")
    monkeypatch.setattr(shutil, "copyfile", no_space)
    with pytest.raises(DiskFullError) as caught:
        publish_extract(home, CODE)
    assert f"the disk of {extract} is full" in str(caught.value)
    assert extract.read_bytes() == b"old extract"
    assert sorted(p.name for p in extract.parent.iterdir()) == [extract.name]  # no temporary file left


def test_atomic_writes_replace_whole_files_and_leave_nothing_on_failure(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a" / "check.json"
    target.parent.mkdir()
    write_atomic(target, "{}")
    assert target.read_text() == "{}"
    source = tmp_path / "source"
    source.write_bytes(b"x" * 10)
    copy_atomic(source, target)
    assert target.read_bytes() == b"x" * 10
    monkeypatch.setattr(shutil, "copyfile", no_space)
    with pytest.raises(OSError):
        copy_atomic(source, target)
    assert target.read_bytes() == b"x" * 10 and [p.name for p in target.parent.iterdir()] == ["check.json"]
