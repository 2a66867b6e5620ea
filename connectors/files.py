"""File-drop connector: a folder departments drop files into; each complete file taken once."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.payload import Payload

_MEDIA = {"csv": "text/csv"}


@dataclass(frozen=True)
class FilesConnector:
    """Yields each file matching `pattern` under `folder` whose name the state has not seen."""

    folder: Path
    pattern: str
    format: str
    encoding: str

    def fetch(self, state: Mapping[str, Any]) -> Iterator[Payload]:
        """Files in name order; the cursor records every name taken so far."""
        seen = set(state.get("files", []))
        for path in sorted(self.folder.glob(self.pattern)):
            # A name starting with '.' or ending in '.part' is still being written.
            if path.name in seen or path.name.startswith(".") or path.suffix == ".part" or not path.is_file():
                continue
            seen.add(path.name)
            yield Payload(
                name=path.name, data=path.read_bytes(), media_type=_MEDIA[self.format],
                encoding=self.encoding, cursor={"files": sorted(seen)},
            )
