"""The one shape every connector yields: a raw payload and the cursor state it advances to.

A payload's bytes are either held (`data`: what an API page, a query or a push gives) or left where
they are (`opener`: a dropped file, which may be a whole city's register): a file payload is read
as a stream when it is landed, never as one `bytes` object, and its content hash is computed
the same way, so it is the same batch id as the same bytes held.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

CHUNK = 8 << 20  # bytes read at a time when a payload is streamed


def sha256_of(stream: IO[bytes]) -> str:
    """sha256 hex of a binary stream, read in bounded chunks."""
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Payload:
    """Raw input exactly as received from a source, plus where it came from.

    Give `data` (the bytes), or `opener` (opens the bytes as a binary stream) with their `size` and
    `digest` (sha256 hex), as a file connector does that has hashed the file as it read it."""

    name: str
    data_: bytes | None = field(default=None, repr=False)
    media_type: str = ""
    encoding: str | None = None
    cursor: Mapping[str, Any] = field(default_factory=dict)
    # why the connector could not make sense of the bytes (e.g. an unknown file type): the payload
    # is landed as it is and refused alone, so one bad file never holds back the ones after it
    unreadable: str | None = None
    opener: Callable[[], IO[bytes]] | None = field(default=None, repr=False, compare=False)
    size_: int | None = None
    digest: str | None = None

    def __init__(self, name: str, data: bytes | None = None, media_type: str = "", encoding: str | None = None,
                 cursor: Mapping[str, Any] | None = None, unreadable: str | None = None, *,
                 opener: Callable[[], IO[bytes]] | None = None, size: int | None = None,
                 digest: str | None = None) -> None:
        if (data is None) == (opener is None):
            raise TypeError("a Payload has either its bytes (data) or an opener for them")
        for key, value in (("name", name), ("data_", data), ("media_type", media_type), ("encoding", encoding),
                           ("cursor", dict(cursor or {})), ("unreadable", unreadable), ("opener", opener),
                           ("size_", len(data) if data is not None else size), ("digest", digest)):
            object.__setattr__(self, key, value)

    @property
    def data(self) -> bytes:
        """The whole payload as bytes: read from its stream if it has one (only for small payloads;
        landing streams a file payload through `open`)."""
        if self.data_ is not None:
            return self.data_
        with self.open() as stream:
            return stream.read()

    def open(self) -> IO[bytes]:
        """The payload as a binary stream."""
        if self.opener is not None:
            return self.opener()
        assert self.data_ is not None
        return io.BytesIO(self.data_)

    @property
    def size(self) -> int:
        """The payload's length in bytes."""
        if self.size_ is not None:
            return self.size_
        with self.open() as stream:
            return stream.seek(0, io.SEEK_END)

    @property
    def content_hash(self) -> str:
        """sha256 of the bytes: the landing batch id. The same content twice is one batch."""
        if self.digest is not None:
            return self.digest
        if self.data_ is not None:
            return hashlib.sha256(self.data_).hexdigest()
        with self.open() as stream:
            return sha256_of(stream)


class Connector(Protocol):
    """Pulls one feed's source; the cursor state is committed only with the data it covers."""

    def fetch(self, state: Mapping[str, Any]) -> Iterator[Payload]:
        """Yield payloads not yet covered by `state`."""
        ...
