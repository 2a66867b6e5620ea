"""Atomic file writes: the one home of "write beside, then rename over".

A reader (another task, an analyst, a gateway poll) sees either the old file or the new one,
never a half: the new content goes to a temporary file in the same folder (so the rename stays
on one file system) and replaces the target with `os.replace`. A writer that fails or is killed
leaves the target as it was; the temporary file is removed on failure (a kill can leave one,
named `.<name>.<pid>.<random>.tmp`, which the next write does not reuse).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_sibling(path: Path) -> Path:
    """A fresh temporary name beside `path`, unique to this process and call."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces `path` in one rename, on any
    error it is removed and `path` is left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes | str, encoding: str = "utf-8") -> Path:
    """Write `data` (text is encoded with `encoding`) to `path` atomically; returns `path`."""
    with atomic_target(path) as tmp:
        tmp.write_bytes(data.encode(encoding) if isinstance(data, str) else data)
    return path


def copy_atomic(source: Path, target: Path) -> Path:
    """Copy `source` to `target` atomically (a reader never opens a half-copied file)."""
    with atomic_target(target) as tmp:
        shutil.copyfile(source, tmp)
    return target
