"""The home's files are owner-only (or readable by a share group), even when the process umask is loose."""

from __future__ import annotations

import grp
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import share_group

from civicnet.settings import Settings
from schemas import homefiles
from schemas.homefiles import (
    OWNER_ONLY,
    Modes,
    NotAFolderError,
    UnknownShareGroupError,
    make_folder,
    open_private,
    place_folder,
    secret_modes,
    secure_home,
    shared,
    temporary_folder,
    temporary_sibling,
    using_modes,
    write_atomic,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def loose(request: pytest.FixtureRequest) -> Iterator[Modes]:
    """The modes given by the test (owner-only unless parametrized), under a loose umask (022), as in a
    notebook or a test process that no entry point set up."""
    modes = getattr(request, "param", OWNER_ONLY)
    modes = shared(share_group()) if modes == "shared" else modes
    with using_modes(modes):
        os.umask(0o022)
        yield modes


def test_owner_only_folders_and_files_ignore_a_loose_umask(loose: Modes, tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "home" / "outbox" / "station")
    written = write_atomic(folder / "report.csv", "line,key\r\n")
    with open_private(tmp_path / "home" / "task.log", append=True) as log:
        log.write(b"started\n")

    assert [mode(p) for p in (tmp_path / "home", tmp_path / "home" / "outbox", folder)] == [0o700] * 3
    assert mode(written) == mode(tmp_path / "home" / "task.log") == 0o600
    assert written.read_bytes() == b"line,key\r\n"
    assert sorted(p.name for p in folder.iterdir()) == ["report.csv"]  # no temporary file left


def test_a_leftover_temporary_file_of_a_killed_run_does_not_keep_its_mode(loose: Modes, tmp_path: Path) -> None:
    target = tmp_path / "cursor.json"
    leftover = tmp_path / f".cursor.json.{os.getpid()}.{threading.get_ident()}.tmp"
    leftover.write_text("half")
    os.chmod(leftover, 0o666)

    write_atomic(target, "{}")

    assert mode(target) == 0o600 and target.read_text() == "{}"


@pytest.mark.parametrize("loose", ["shared"], indirect=True)
def test_a_share_group_may_read_but_not_write(loose: Modes, tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "home" / "extracts" / "street")
    written = write_atomic(folder / "440304001000.duckdb", b"x")
    made_by_a_library = folder / "made_by_duckdb.wal"  # a file DuckDB creates: the folder gives it the group
    made_by_a_library.write_bytes(b"")

    for f in (tmp_path / "home", tmp_path / "home" / "extracts", folder):
        assert (mode(f), f.stat().st_gid) == (0o2750, loose.gid)
    assert (mode(written), written.stat().st_gid) == (0o640, loose.gid)
    assert made_by_a_library.stat().st_gid == loose.gid


def test_an_unknown_share_group_is_refused_with_the_fix() -> None:
    with pytest.raises(UnknownShareGroupError, match="groupadd civicnet-no-such-group"):
        shared("civicnet-no-such-group")


def old_home(root: Path) -> Path:
    """A home as civicnet 0.3.0 left it: folders 0755, files 0644."""
    for sub in ("nodes/city", "landing/residents/ab", "outbox/ps/residents"):
        (root / sub).mkdir(parents=True)
    for f in ("nodes/city/440300000000.duckdb", "landing/residents/ab/payload.csv", "outbox/ps/residents/ab.csv"):
        (root / f).write_text("110101199003077777,张三")
    for p in (root, *root.rglob("*")):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return root


def test_a_world_readable_home_of_an_older_civicnet_is_closed(loose: Modes, tmp_path: Path) -> None:
    home = old_home(tmp_path / "var")

    assert secure_home(home) is True
    assert secure_home(home) is False  # already closed: nothing walked again

    entries = [home, *home.rglob("*")]
    assert {mode(p) for p in entries if p.is_dir()} == {0o700}
    assert {mode(p) for p in entries if p.is_file()} == {0o600}


def test_a_folder_that_is_not_a_civicnet_home_is_left_alone(loose: Modes, tmp_path: Path) -> None:
    (tmp_path / "var" / "lib").mkdir(parents=True)
    os.chmod(tmp_path / "var", 0o755)

    assert secure_home(tmp_path / "var") is False
    assert mode(tmp_path / "var") == 0o755


def test_settings_read_the_share_group_and_apply_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    group = share_group()
    monkeypatch.setenv("CIVICNET_SHARE_GROUP", group)
    home = old_home(tmp_path / "var")
    settings = Settings.from_env(home)

    with using_modes(OWNER_ONLY):
        modes = settings.apply_file_modes()
        umask = os.umask(0o077)

    assert settings.share_group == group and modes == shared(group) and umask == 0o027
    assert (mode(home), home.stat().st_gid) == (0o2750, grp.getgrnam(group).gr_gid)
    assert {mode(p) for p in home.rglob("*") if p.is_file()} == {0o640}
    assert Settings.from_env(home, share_group="").file_modes() == OWNER_ONLY


def test_a_file_where_the_home_needs_a_folder_is_refused_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "outbox").write_text("not a folder")
    with pytest.raises(NotAFolderError, match="exists and is not a folder; move it away") as caught:
        make_folder(tmp_path / "outbox")
    assert isinstance(caught.value, NotADirectoryError)  # what it raised before it had a name


def test_two_threads_writing_one_path_at_once_never_tear_it_nor_leave_a_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "network.json"
    payloads = [bytes([ord("a") + i]) * 300_000 for i in range(2)]
    write_atomic(target, payloads[0])
    names: list[Path] = []
    make_name = homefiles.temporary_sibling

    def recorded(path: Path) -> Path:
        names.append(make_name(path))
        return names[-1]

    monkeypatch.setattr(homefiles, "temporary_sibling", recorded)
    start, stop, seen = threading.Barrier(3), threading.Event(), set()

    def writer(data: bytes) -> None:
        start.wait()
        for _ in range(40):
            write_atomic(target, data)

    def reader() -> None:
        start.wait()
        while not stop.is_set():
            seen.add(target.read_bytes())

    writers = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    watcher = threading.Thread(target=reader)
    for t in (*writers, watcher):
        t.start()
    for t in writers:
        t.join()
    stop.set()
    watcher.join()

    assert seen and seen <= set(payloads)  # a reader saw whole files only, never a part of one
    assert target.read_bytes() in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["network.json"]  # no temporary file of either left
    assert len(names) == len(set(names)) == 80  # every write had its own temporary name


def test_temporary_names_differ_even_for_the_same_pid_and_thread(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # two containers writing a shared folder can both be pid 7 on a thread of the same id
    monkeypatch.setattr(os, "getpid", lambda: 7)
    monkeypatch.setattr(threading, "get_ident", lambda: 1)
    names = {temporary_sibling(tmp_path / "network.json") for _ in range(1000)}

    assert len(names) == 1000
    assert all(n.parent == tmp_path and n.name.startswith(".network.json.7.1.") and n.name.endswith(".tmp")
               for n in names)


def test_a_failed_atomic_write_removes_its_temporary_file_and_keeps_the_old_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = write_atomic(tmp_path / "senders.json", "old")

    def refused(src: object, dst: object) -> None:
        raise PermissionError(13, "refused")

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(PermissionError):
        write_atomic(target, "new")

    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["senders.json"]


def test_a_secret_stays_owner_only_in_a_shared_home(tmp_path: Path) -> None:
    modes = shared(share_group())
    with using_modes(modes):
        written = write_atomic(make_folder(tmp_path / "gateway") / "senders.json", "{}", secret_modes(), durable=True)

    assert (mode(written), written.stat().st_gid) == (0o600, modes.gid)


def test_a_folder_is_placed_whole_once(tmp_path: Path) -> None:
    final = tmp_path / "landing" / "facilities" / "ab"
    half = make_folder(final)
    (half / "payload.csv").write_text("cut off")  # a killed writer's folder: no manifest
    first, second = temporary_folder(final), temporary_folder(final)
    for tmp, text in ((first, "first"), (second, "second")):
        (tmp / "manifest.json").write_text(text)

    assert place_folder(first, final, complete="manifest.json") is True  # the half folder is replaced
    assert place_folder(second, final, complete="manifest.json") is False  # the whole one is left alone
    assert sorted(p.name for p in final.iterdir()) == ["manifest.json"]
    assert (final / "manifest.json").read_text() == "first" and mode(final) == 0o700
    assert [p.name for p in final.parent.iterdir()] == ["ab"]
