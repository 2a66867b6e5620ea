"""File-drop connector: a folder (local or any fsspec URL) that departments drop files into.

Each complete file is taken once, in name order. The state remembers the sha256 of every file
taken, so a file dropped again under the same name with different content (a correction) is
taken again, and the same content is skipped. A file that may still be being written (a
temporary name, modified within `settle_seconds`, or, for a feed without a settle time, a
Parquet/XLSX file whose end is missing) is left for the next pull. A file that cannot be read
(an unknown extension, an encoding we do not detect, and, once parsed, an empty or cut-off file)
is yielded like the others, so the pipeline lands it and refuses it alone: one bad file never
holds back the files after it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs

from connectors.feeds import FilesSource
from connectors.parse_encoding import detect_stream_encoding
from connectors.parse_limits import UnreadablePayloadError
from connectors.payload import Payload, sha256_of
from schemas.errors import TransientError
from schemas.media import CSV, MEDIA_TYPES, PARQUET, XLSX

log = logging.getLogger(__name__)

# names that browsers, Office, rsync/WinSCP and copy tools give a file while writing it
_PARTIAL_PREFIXES = (".", "~$")
_PARTIAL_SUFFIXES = (".part", ".tmp", ".crdownload", ".filepart")
# fsspec implementations name the modification time differently (local, S3, memory, ...)
_TIME_KEYS = ("mtime", "LastModified", "last_modified", "updated", "created")
# a taken name whose content an older state did not record ({"files": [names]})
Taken = dict[str, str | None]
# the media type of a file whose extension names no format we read (it is landed and refused)
UNKNOWN_MEDIA_TYPE = "application/octet-stream"


class FilesUnavailableError(TransientError):
    """The drop folder would not give a file (a share down, a permission changing); the next pull retries."""


def taken_files(state: Mapping[str, Any]) -> Taken:
    """The files a state says were taken, name → sha256 (None: taken before hashes were kept)."""
    files = state.get("files", {})
    if isinstance(files, list):
        return dict.fromkeys(files)
    return dict(files)


def is_partial_name(name: str) -> bool:
    """Whether a file's name says a tool is still writing it."""
    base = name.rsplit("/", 1)[-1]
    return base.startswith(_PARTIAL_PREFIXES) or base.endswith(_PARTIAL_SUFFIXES)


def modified_at(info: Mapping[str, Any]) -> float | None:
    """A file's modification time (epoch seconds) from an fsspec `info` entry, if it gives one."""
    for key in _TIME_KEYS:
        value = info.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value)
            except ValueError:
                continue
        if isinstance(value, dt.datetime):
            return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    return None


def is_complete(stream: IO[bytes], media_type: str) -> bool:
    """Whether a Parquet or XLSX file (a seekable binary stream) has its end (a writer puts the footer
    or zip directory last). Only its ends are read."""
    if media_type == PARQUET:
        head = stream.read(4)
        size = stream.seek(0, os.SEEK_END)
        if size < 12:
            return False
        stream.seek(size - 4)
        return head == b"PAR1" and stream.read(4) == b"PAR1"
    if media_type == XLSX:
        return zipfile.is_zipfile(stream)
    return True


@dataclass(frozen=True)
class FilesConnector:
    """Yields each new or corrected file matching `source.pattern` under `source.path`."""

    source: FilesSource
    key: tuple[str, ...] = ()

    def fetch(self, state: Mapping[str, Any]) -> Iterator[Payload]:
        """One payload per file, in name order; each cursor records every file taken so far."""
        fs, root = url_to_fs(self.source.path)
        root = root.rstrip("/")
        taken = taken_files(state)
        # size and mtime of each taken file: an unchanged file is skipped without reading it again
        stats: dict[str, list[Any]] = {k: list(v) for k, v in (state.get("stats") or {}).items()}
        failed: list[str] = []  # files the folder would not give us: the others are taken first
        for name, path, stat in self._settled(fs, root):
            if taken.get(name, "") is None:
                continue  # taken under an old state that kept no hash
            if name in taken and stat is not None and stats.get(name) == stat:
                continue
            media_type, unknown = self._media_type(name)
            try:
                read = self._read(fs, path, name)
            except TransientError as err:
                failed.append(str(err))
                continue
            if read is None:
                continue
            digest, size, complete, encoding = read
            if taken.get(name) == digest:
                continue  # touched, not changed (the next payload's cursor records its new stat)
            if not complete and self.source.settle_seconds == 0:
                log.info("%s: still being written (its end is missing), taken next pull", name)
                continue
            # past settle_seconds a file whose end is missing is cut off, not being written: it is
            # yielded, and refused alone as unreadable (waiting for it would hide it for ever)
            if name in taken:
                log.warning("%s was dropped again with different content: taking the corrected file", name)
            taken[name] = digest
            if stat is not None:
                stats[name] = stat
            # an unreadable file is yielded too: it is landed and refused alone, never holding back the rest;
            # its bytes stay in the drop: landing streams them (a city's register is gigabytes)
            yield Payload(name=name, media_type=media_type, encoding=encoding,
                          cursor={**state, "files": dict(taken), "stats": dict(stats)}, unreadable=unknown,
                          opener=self._opener(fs, path, name), size=size, digest=digest)
        if failed:
            raise FilesUnavailableError(f"{'; '.join(failed)} (the other files of the drop were taken)")

    def _read(self, fs: AbstractFileSystem, path: str, name: str) -> tuple[str, int, bool, str | None] | None:
        """A file's sha256, size, whether its end is there, and its text encoding, read as a stream (never
        whole: a drop may be a city's register); None if it was moved away since the listing."""
        media_type = self._media_type(name)[0]
        try:
            with fs.open(path, "rb") as stream:
                digest = sha256_of(stream)
                size = stream.seek(0, os.SEEK_END)
                stream.seek(0)
                complete = is_complete(stream, media_type)
                stream.seek(0)
                encoding = self._encoding(stream, media_type)
        except FileNotFoundError:
            log.info("%s: gone since the listing (moved or renamed), skipped", name)
            return None
        except OSError as err:
            raise FilesUnavailableError(f"cannot read {name} in {self.source.path}: {err}; retried next run") from None
        return digest, size, complete, encoding

    def _opener(self, fs: AbstractFileSystem, path: str, name: str) -> Callable[[], IO[bytes]]:
        """Opens the file again when it is landed (a share down meanwhile: retried next pull)."""
        def opener() -> IO[bytes]:
            try:
                stream: IO[bytes] = fs.open(path, "rb")
            except OSError as err:
                raise FilesUnavailableError(f"cannot read {name} in {self.source.path}: {err}; "
                                            "retried next run") from None
            return stream
        return opener

    def _listing(self, fs: AbstractFileSystem, root: str) -> dict[str, tuple[str, Mapping[str, Any]]]:
        """Files matching the pattern, name (relative to the folder) → (path, info), in name order."""
        found = fs.glob(f"{root}/{self.source.pattern}", detail=True)
        files = {}
        for path, info in found.items():
            name = path[len(root) + 1:] if path.startswith(root + "/") else path.rsplit("/", 1)[-1]
            if info.get("type") == "file" and not is_partial_name(name):
                files[name] = (path, info)
        return dict(sorted(files.items()))

    def _settled(self, fs: AbstractFileSystem, root: str) -> list[tuple[str, str, list[Any] | None]]:
        """(name, path, [size, mtime] or None) of the listed files not modified within `settle_seconds`."""
        listing = self._listing(fs, root)
        settle = self.source.settle_seconds
        now = time.time()
        settled, untimed = [], []
        for name, (_path, info) in listing.items():
            mtime = modified_at(info)
            if mtime is None:
                untimed.append(name)
            elif settle == 0 or now - mtime >= settle:
                settled.append(name)
            else:
                log.info("%s: modified %.0f s ago, less than settle_seconds; taken next pull", name, now - mtime)
        if untimed and settle > 0:
            # no modification time: a file whose size holds still over settle_seconds is complete
            time.sleep(settle)
            again = self._listing(fs, root)
            for name in untimed:
                if name in again and again[name][1].get("size") == listing[name][1].get("size"):
                    settled.append(name)
                else:
                    log.info("%s: still growing, taken next pull", name)
        else:
            settled += untimed
        out = []
        for name in sorted(settled):
            path, info = listing[name]
            mtime = modified_at(info)
            out.append((name, path, None if mtime is None else [info.get("size"), mtime]))
        return out

    def _media_type(self, name: str) -> tuple[str, str | None]:
        """The media type of a file (the feed's format, or by extension for `auto`), and why it has
        none we read (None when it has one)."""
        if self.source.format != "auto":
            return MEDIA_TYPES[self.source.format], None
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if extension not in MEDIA_TYPES:
            return UNKNOWN_MEDIA_TYPE, (
                f"file {name!r} in {self.source.path} has no readable extension; accepted: "
                f"{', '.join('.' + e for e in sorted(MEDIA_TYPES))}. Rename it, move it out of the drop folder, "
                "or narrow 'pattern' in the feed config")
        return MEDIA_TYPES[extension], None

    def _encoding(self, stream: IO[bytes], media_type: str) -> str | None:
        """The text encoding of a CSV (declared, or detected for `auto`); None for other formats, and
        for a CSV in no encoding we detect (reading it then says why, naming the file)."""
        if media_type != CSV:
            return None
        if self.source.encoding != "auto":
            return self.source.encoding
        try:
            return detect_stream_encoding(stream)
        except UnreadablePayloadError:
            return None
