"""Who may read the civicnet home: owner-only by default, or a share group for analysts.

The home holds personal data everywhere (nodes, extracts, landing, staging, outbox, quarantine,
reports, task logs). Two things make its files private, and both are needed:

- the process umask (`use_modes`, called by every entry point: the CLI, the gateway app, the
  DAG task wrapper). It is the only hook on files that libraries create themselves: DuckDB's
  database and WAL files, Parquet from pyarrow, GX Data Docs, SQLite, Airflow's metadata;
- explicit modes where civicnet creates a folder or writes a file (`make_folder`,
  `write_atomic`, `secure`), so that the packages stay private when called from a process whose
  umask is loose (a notebook, a test) and so that a share group is set on what they create.

With a share group, folders are 0750 with the set-group-ID bit and files 0640, owned by that
group: on Linux, what a library creates inside such a folder takes its group too. Without one,
folders are 0700 and files 0600.
"""

from __future__ import annotations

import contextlib
import grp
import os
import secrets
import shutil
import stat
import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from schemas.errors import TerminalError
from schemas.layout import HOME_FOLDERS


class UnknownShareGroupError(TerminalError):
    """The configured share group does not exist on this machine."""


class NotAFolderError(TerminalError, NotADirectoryError):
    """A path the home needs as a folder is a file (still a NotADirectoryError, as it was)."""


@dataclass(frozen=True)
class Modes:
    """The permissions of what civicnet creates under its home."""

    file: int = 0o600
    folder: int = 0o700
    gid: int | None = None  # the share group's id; None: owner-only

    @property
    def umask(self) -> int:
        """The process umask that gives library-made files (at most) these modes."""
        return 0o777 & ~(self.folder | self.file)

    @property
    def folder_bits(self) -> int:
        """A folder's full mode: with the set-group-ID bit when shared, so new entries take the group."""
        return self.folder | (stat.S_ISGID if self.gid is not None else 0)


OWNER_ONLY = Modes()
_current = OWNER_ONLY


def shared(group: str) -> Modes:
    """Modes that let the members of `group` read the home (files 0640, folders 0750)."""
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise UnknownShareGroupError(
            f"share group {group!r} does not exist on this machine: create it (groupadd {group}) and add "
            "the analysts to it, or unset CIVICNET_SHARE_GROUP to keep the home owner-only") from None
    return Modes(file=0o640, folder=0o750, gid=gid)


def current_modes() -> Modes:
    """The modes of this process (owner-only unless an entry point chose a share group)."""
    return _current


def use_modes(modes: Modes) -> Modes:
    """Make `modes` this process's: for civicnet's own writes and, through the umask, for libraries'.
    Returns the previous modes."""
    global _current
    previous, _current = _current, modes
    os.umask(modes.umask)
    return previous


@contextlib.contextmanager
def using_modes(modes: Modes) -> Iterator[Modes]:
    """`use_modes` for a block, restoring the previous modes and umask after it."""
    old_umask = os.umask(modes.umask)
    previous = use_modes(modes)
    try:
        yield modes
    finally:
        use_modes(previous)
        os.umask(old_umask)


def secure(path: Path, modes: Modes | None = None) -> Path:
    """Give an existing file or folder the home's mode and group (for what a library wrote); a link,
    or an entry of another account (a department's file in its drop folder), is left alone."""
    m = modes or _current
    info = path.lstat()
    euid = os.geteuid()
    if stat.S_ISLNK(info.st_mode) or (euid != 0 and info.st_uid != euid):
        return path
    chowned = m.gid is not None and info.st_gid != m.gid
    if m.gid is not None and chowned:
        os.chown(path, -1, m.gid, follow_symlinks=False)
    want = m.folder_bits if stat.S_ISDIR(info.st_mode) else m.file
    if chowned or stat.S_IMODE(info.st_mode) != want:  # chown may clear the set-group-ID bit
        os.chmod(path, want)
    return path


def make_folder(path: Path) -> Path:
    """Create `path` and any missing parents, each with the home's folder mode and group (the umask
    does not decide); folders that exist already are left as they are."""
    missing = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for new in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first: keep its mode
            new.mkdir(mode=0o700)
            secure(new)
    if not path.is_dir():
        raise NotAFolderError(f"{path} exists and is not a folder; move it away")
    return path


def secret_modes(modes: Modes | None = None) -> Modes:
    """The modes of a file that holds credentials: owner-only, in the share group if there is one."""
    return Modes(gid=(modes or _current).gid)


def write_atomic(path: Path, data: bytes | str, modes: Modes | None = None, durable: bool = False) -> Path:
    """Write `data` (str as UTF-8) to `path` through a temporary file of this writer's own beside it
    (`temporary_sibling`) and an atomic replace, with the home's file mode and group (or `modes`) from
    the first byte on: a reader sees the old file or the new one, never a part. `durable` flushes the
    bytes to disk before the replace (a registry a crash must not empty). On any error the temporary
    file is removed and `path` is left as it was."""
    m = modes or _current
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = temporary_sibling(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, m.file)
    try:
        os.fchmod(fd, m.file)  # O_CREAT's mode passes the umask
        if m.gid is not None:
            os.fchown(fd, -1, m.gid)
        with os.fdopen(fd, "wb") as out:
            fd = -1
            out.write(raw)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd != -1:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return path


def open_private(path: Path, append: bool = False) -> BinaryIO:
    """Open `path` for writing bytes (truncating, or appending), with the home's file mode and group
    (for a log or a stream that is not written in one piece)."""
    m = _current
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), m.file)
    try:
        os.fchmod(fd, m.file)
        if m.gid is not None:
            os.fchown(fd, -1, m.gid)
    except OSError:
        os.close(fd)
        raise
    return os.fdopen(fd, "ab" if append else "wb")


def secure_tree(root: Path, modes: Modes | None = None, secrets: Collection[str] = ()) -> int:
    """Give every folder and file under `root` (and `root`) the home's modes; links are not followed.
    `secrets` (paths relative to `root`, such as a token registry) stay owner-only even when shared.
    Returns how many entries were changed or checked."""
    m = modes or _current
    count = 0
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in (*dirs, *files):
            path = Path(folder) / name
            secret = path.relative_to(root).as_posix() in secrets
            # replaced or removed meanwhile; or another account's (a department's file in its drop folder)
            with contextlib.suppress(FileNotFoundError, PermissionError):
                secure(path, Modes(gid=m.gid) if secret else m)
                count += 1
    secure(root, m)
    return count + 1


HOME_MARKERS = HOME_FOLDERS  # folders only a civicnet home has


def secure_home(home: Path, modes: Modes | None = None, secrets: Collection[str] = ()) -> bool:
    """Bring an existing home to `modes`: when the home folder's own mode or group differ (a home of
    an older civicnet, written world-readable, or a share group added or dropped), every entry under
    it is changed (`secrets` stay owner-only). A folder that is not a civicnet home (none of
    HOME_MARKERS) is never touched.
    True if the home was changed."""
    m = modes or _current
    if not any((home / marker).is_dir() for marker in HOME_MARKERS):
        return False
    info = home.stat()
    if os.geteuid() not in (0, info.st_uid):  # an analyst's command on the owner's home changes nothing
        return False
    if stat.S_IMODE(info.st_mode) == m.folder_bits and (m.gid is None or info.st_gid == m.gid):
        return False
    secure_tree(home, m, secrets)
    return True


def temporary_sibling(path: Path) -> Path:
    """A fresh temporary name beside `path`: `.<name>.<pid>.<thread>.<random>.tmp`, the one scheme of
    every atomic write. It is unique to this writer and call: two threads or processes writing the
    same target never share one, nor do two machines (or containers) whose pid and thread happen to
    match on a shared folder. The leading dot and `.tmp` keep readers of the folder off it."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{secrets.token_hex(8)}.tmp")


@contextlib.contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` for a library to write (pyarrow, DuckDB, a copy); on
    success it gets the home's mode and replaces `path` in one rename, on any error it is removed
    and `path` is left as it was (a reader never sees a half-written file)."""
    make_folder(path.parent)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        secure(tmp)  # the library created it under the umask
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def copy_atomic(source: Path, target: Path) -> Path:
    """Copy `source` to `target` atomically, with the home's mode; returns `target`."""
    with atomic_target(target) as tmp:
        shutil.copyfile(source, tmp)
    return target


def temporary_folder(path: Path) -> Path:
    """A new, empty folder beside `path` to fill before `place_folder` renames it into place."""
    return make_folder(temporary_sibling(path))


def place_folder(tmp: Path, path: Path, complete: str) -> bool:
    """Rename the filled folder `tmp` (from `temporary_folder`) to `path` in one step, its entries
    given the home's modes first. A folder is whole when it holds the file `complete` (written last):
    if `path` is whole already (another writer placed the same folder first, or meanwhile), `tmp` is
    discarded and `path`, which readers may hold, is left as it is: False. A `path` that is not whole
    (left by a killed writer) is replaced. True if `tmp` took `path`'s place."""
    secure_tree(tmp)
    if (path / complete).exists():
        shutil.rmtree(tmp)
        return False
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    try:
        os.replace(tmp, path)
    except OSError:  # ENOTEMPTY/EEXIST: another writer renamed its folder in first
        if not (path / complete).exists():
            raise
        shutil.rmtree(tmp)
        return False
    return True
