"""What a payload reader refuses, in one place: the limits of one payload's work (`ParseLimits`, one set
for pushes and one for pulls) and the errors every reader of `connectors.parse` raises.

A refusal says which file, and where (line, record, row, column or key), never a value from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.errors import TerminalError
from schemas.messages import shown_name

SPLIT_HINT = "split it into smaller files and send each"


class UnreadablePayloadError(TerminalError):
    """A payload cannot be decoded in the encoding or format its feed declares."""


class PayloadTooLargeError(UnreadablePayloadError):
    """A payload holds more rows, or inflates to more bytes, than its reader's limits allow (HTTP 413)."""


class TooManyColumnsError(UnreadablePayloadError):
    """A payload has more columns (or distinct JSON keys) than its reader's limits allow (HTTP 422)."""


class NotTextError(UnreadablePayloadError):
    """A line of a text payload is not in its declared encoding (where: line and byte, never the bytes)."""

    def __init__(self, line: int, byte: int) -> None:
        super().__init__(f"line {line} (byte {byte}) is not text in the declared encoding")
        self.line, self.byte = line, byte


class RepeatedKeyError(TerminalError, ValueError):
    """A JSON object names one key twice (json.loads would keep the last value silently)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"a JSON object repeats the key {shown_name(key)}")
        self.key = key


@dataclass(frozen=True)
class ParseLimits:
    """How much work one payload may cause before its columns are checked; every reader stops at
    the first limit it reaches, so a hostile file costs no more than a file at the limits."""

    rows: int  # data records
    columns: int  # header columns, distinct JSON keys, or the width of any spreadsheet row
    uncompressed_bytes: int  # XLSX zip members (declared and as inflated), Parquet pages (declared)
    zip_members: int = 1000


# The limits, in one place. A push (gateway and `civicnet push`) is a department's or a community's
# file of at most a few MiB; a pulled file (a drop, an export) may be a whole city's register
# (17.5 million residents at the 2020 census).
PUSH_LIMITS = ParseLimits(rows=1_000_000, columns=200, uncompressed_bytes=256 << 20)
PULL_LIMITS = ParseLimits(rows=25_000_000, columns=500, uncompressed_bytes=4 << 30)


def too_many_rows(name: str, limits: ParseLimits) -> PayloadTooLargeError:
    """The refusal of a file with more records than `limits.rows`."""
    return PayloadTooLargeError(f"{name}: more than {limits.rows} rows, the limit for one file; {SPLIT_HINT}")


def too_many_columns(name: str, what: str, limits: ParseLimits) -> TooManyColumnsError:
    """The refusal of a file wider than `limits.columns`; `what` says where ("row 3 has", ...)."""
    return TooManyColumnsError(f"{name}: {what} more than {limits.columns} columns, the limit for one file; "
                               "remove the columns the feed does not map, or split the file by columns")


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook` for json.loads: an object, refusing one that repeats a key (RepeatedKeyError)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise RepeatedKeyError(key)
        out[key] = value
    return out
