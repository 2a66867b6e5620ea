"""The one shape every connector yields: a raw payload and the cursor state it advances to."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Payload:
    """Raw input exactly as received from a source, plus where it came from."""

    name: str
    data: bytes
    media_type: str
    encoding: str | None = None
    cursor: Mapping[str, Any] = field(default_factory=dict)
    # why the connector could not make sense of the bytes (e.g. an unknown file type): the payload
    # is landed as it is and refused alone, so one bad file never holds back the ones after it
    unreadable: str | None = None

    @property
    def content_hash(self) -> str:
        """sha256 of the bytes: the landing batch id. The same content twice is one batch."""
        return hashlib.sha256(self.data).hexdigest()


class Connector(Protocol):
    """Pulls one feed's source; the cursor state is committed only with the data it covers."""

    def fetch(self, state: Mapping[str, Any]) -> Iterator[Payload]:
        """Yield payloads not yet covered by `state`."""
        ...
