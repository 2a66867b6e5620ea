"""The media types civicnet reads and lands, and the file extensions that name them.

Shared by the connectors (a file drop's extension, a push's Content-Type, the payload readers) and
the warehouse (the extension of a landed payload), so it lives here, below both.
"""

from __future__ import annotations

from typing import Final, Literal

MediaType = Literal[
    "text/csv",
    "application/vnd.apache.parquet",
    "application/x-ndjson",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
]
CSV: Final = "text/csv"
PARQUET: Final = "application/vnd.apache.parquet"
JSONL: Final = "application/x-ndjson"
XLSX: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# file extension → media type, for file drops and pushes
MEDIA_TYPES: Final[dict[str, MediaType]] = {"csv": CSV, "parquet": PARQUET, "jsonl": JSONL, "ndjson": JSONL,
                                            "xlsx": XLSX}
# media type → the extension a landed payload is stored under
EXTENSIONS: Final[dict[str, str]] = {CSV: "csv", PARQUET: "parquet", JSONL: "jsonl", XLSX: "xlsx"}
