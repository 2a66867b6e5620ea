"""The incremental cursor of a pulled feed: an inclusive boundary with a lag window, and content digests.

A pull asks its source for the records whose cursor is at or after `watermark - lag`. The boundary is
inclusive (more records stamped exactly at the watermark may have arrived since) and the lag re-reads
a window below it, where late commits land (long transactions, clock skew between writers). Re-read
records are told apart by content: the state keeps, per key, the digest of every record read inside
the lag window below the new watermark (the boundary), so a record re-read unchanged is skipped and a
changed one (even with an older cursor, as long as it is inside the window) is taken once. A record
committed further behind is missed here and found by reconciliation.

The state saved on disk (the landing's feed state JSON), one shape for every connector:

    {"watermark": <the cursor value as JSON, null before a cursor was seen>,
     "cursor_type": "instant" | "datetime" | "date" | "number" | "decimal" | "text",
     "digest": "sha1-json",
     "boundary": {"<key values as JSON>": "<digest>" | ["<digest>", ...]}}

A list holds the digests of a key read more than once in one pull (a table without a unique key).
States saved before this module are read as well: the REST connector's have no `cursor_type` (they
were always instants) and no `digest`; a state without `digest` may hold the SQL connector's former
digest (of a row's values in column order), which is accepted too, so that a boundary record re-read
after the upgrade is not taken a second time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from schemas.errors import TerminalError

DIGEST = "sha1-json"  # the content digest below, as named in the saved state

Digests = tuple[str, ...]


class CursorError(TerminalError):
    """A record's cursor value or a feed's saved cursor state cannot be used as the feed's cursor."""


def content_digest(record: Mapping[str, Any]) -> str:
    """The digest of a record's content: sha1 of its JSON with sorted keys, independent of key order.

    sha1 detects a change in data the department itself sends, it guards nothing against an attacker
    (`usedforsecurity=False`); it is the REST connector's digest since its first state, so those
    states stay valid as they are. Dates and decimals count by their text (`default=str`)."""
    text = json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def _former_sql_digest(record: Mapping[str, Any]) -> str:
    """The SQL connector's digest before this module: its row's text values in column order."""
    text = json.dumps(list(record.values()), ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def key_text(values: Sequence[Any]) -> str:
    """A record's key as the state's boundary keys spell it: its key values as JSON text."""
    return json.dumps(list(values), ensure_ascii=False)


# --- cursor values ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CursorKind:
    """One type of cursor value: how it is saved in the state, read back, and moved back by the lag."""

    name: str
    meaning: str  # what a saved watermark of this kind is, for messages
    dump: Callable[[Any], Any]
    load: Callable[[Any], Any]  # raises ValueError or TypeError on a value that is not of this kind
    minus: Callable[[Any, float], Any]


def parse_instant(text: Any) -> dt.datetime | None:
    """An ISO 8601 timestamp with a UTC offset, or None if the text is missing, malformed or naive."""
    try:
        moment = dt.datetime.fromisoformat(str(text)) if text is not None else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


def _load_instant(text: Any) -> dt.datetime:
    moment = parse_instant(text)
    if moment is None:
        raise ValueError("not an ISO timestamp with offset")
    return moment


def _minus_seconds(value: dt.datetime, lag: float) -> dt.datetime:
    return value - dt.timedelta(seconds=lag)


def _minus_number(value: Any, lag: float) -> Any:
    if isinstance(value, int):
        return value - math.ceil(lag)
    return value - (Decimal(str(lag)) if isinstance(value, Decimal) else lag)


def _minus_text(value: str, lag: float) -> str:
    """An ISO timestamp text moved back by `lag` seconds in the same layout; other text is left as is."""
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if lag == 0:
        return value
    earlier = moment - dt.timedelta(seconds=lag)
    if len(value) == 10:
        return earlier.date().isoformat()
    fraction = len(value) > 19 and value[19] == "."
    return earlier.isoformat(sep=value[10], timespec="microseconds" if fraction else "seconds")


def _minus_date(value: dt.date, lag: float) -> dt.date:
    return (dt.datetime.combine(value, dt.time()) - dt.timedelta(seconds=lag)).date()


def _load_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("not a number")
    return value


# a record's timestamp as an instant (REST): the same moment compares equal whatever its offset
INSTANT = CursorKind("instant", "an ISO timestamp with offset", dt.datetime.isoformat, _load_instant, _minus_seconds)
KINDS = {
    "datetime": CursorKind("datetime", "an ISO timestamp", dt.datetime.isoformat, dt.datetime.fromisoformat,
                           _minus_seconds),
    "date": CursorKind("date", "an ISO date", dt.date.isoformat, dt.date.fromisoformat, _minus_date),
    "number": CursorKind("number", "a number", lambda v: v, _load_number, _minus_number),
    "decimal": CursorKind("decimal", "a decimal number", str, Decimal, _minus_number),
    "text": CursorKind("text", "text", str, str, _minus_text),
}
_PYTHON_KINDS: list[tuple[type, str]] = [(bool, ""), (dt.datetime, "datetime"), (dt.date, "date"),
                                         (int, "number"), (float, "number"), (Decimal, "decimal"), (str, "text")]


def kind_of(python_type: type) -> CursorKind | None:
    """The cursor kind of values of a Python type (None for a type that cannot order increments, bool too)."""
    name = next((kind for base, kind in _PYTHON_KINDS if issubclass(python_type, base)), "")
    return KINDS[name] if name else None


def record_instant(record: Mapping[str, Any], name: str) -> dt.datetime:
    """A record's cursor field as an aware datetime; a missing, malformed or naive value is refused."""
    moment = parse_instant(record.get(name))
    if moment is None:
        value = record.get(name)
        # the value's kind, never the value: a mis-set cursor field may hold personal data
        held = "missing" if value is None else f"a {type(value).__name__} of {len(str(value))} characters"
        raise CursorError(f"a record's cursor field {name!r} is {held}, not an ISO 8601 timestamp "
                          "with a UTC offset; fix 'cursor.field' in the feed "
                          "config or ask the department to send offsets")
    return moment


def _floor(kind: CursorKind, watermark: Any, lag: float) -> Any:
    return None if watermark is None else kind.minus(watermark, lag)


# --- the state ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CursorState:
    """What a pull leaves for the next one: the watermark and the digests of the boundary records by key."""

    kind: CursorKind
    watermark: Any = None  # a value of `kind`; None before any cursor value was seen
    boundary: Mapping[str, Digests] = field(default_factory=dict)
    former_digests: bool = False  # saved before `DIGEST`: may hold the SQL connector's former digests

    def low(self, lag: float) -> Any:
        """The inclusive lower bound of the next request, `watermark - lag` (None: read everything)."""
        return _floor(self.kind, self.watermark, lag)

    def saved(self) -> dict[str, Any]:
        """The state as saved on disk (plain JSON values)."""
        return {"watermark": None if self.watermark is None else self.kind.dump(self.watermark),
                "cursor_type": self.kind.name, "digest": DIGEST,
                "boundary": {k: v[0] if len(v) == 1 else list(v) for k, v in self.boundary.items()}}


def read_state(saved: Mapping[str, Any], kind: CursorKind) -> CursorState:
    """The state saved after the last pull, read as values of `kind` (empty before the first pull).

    A state of another cursor type, with a broken watermark, boundary or an unknown digest is refused:
    a person must look at the source and reset the feed's state."""
    watermark = saved.get("watermark")
    if watermark is not None:
        held = saved.get("cursor_type", INSTANT.name)  # the REST connector saved no type: always an instant
        if held != kind.name:
            raise CursorError(f"the feed state holds a {held!r} cursor but the cursor column is now {kind.name!r}; "
                              "reset the feed's state after checking the column change")
        try:
            watermark = kind.load(watermark)
        except (ValueError, TypeError):
            raise CursorError(f"the feed state holds watermark {watermark!r}, not {kind.meaning}; reset the feed's "
                              "state") from None
    digest = saved.get("digest")
    if digest not in (None, DIGEST):
        raise CursorError(f"the feed state holds {digest!r} digests, which this version does not make; reset the "
                          "feed's state (or run the version that saved it)")
    return CursorState(kind, watermark, _read_boundary(saved.get("boundary") or {}), former_digests=digest is None)


def _read_boundary(saved: Any) -> dict[str, Digests]:
    entries = saved.items() if isinstance(saved, Mapping) else None
    boundary = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in entries or ()
                if isinstance(v, str) or (isinstance(v, list) and all(isinstance(d, str) for d in v))}
    if entries is None or len(boundary) != len(saved):
        raise CursorError("the feed state's boundary is not a map of record keys to content digests; reset the "
                          "feed's state")
    return boundary


# --- one pull -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Read:
    """A record read with a cursor value: kept (by digest only, once settled) while it may be in the boundary."""

    cursor: Any
    key: str
    record: Mapping[str, Any] | None
    digest: str | None


@dataclass
class Window:
    """The incremental bookkeeping of one pull: which records are fresh, and the state that covers them all.

    Feed it every record read (`take`), in any order; a source that reads in cursor order calls
    `settle` after each chunk, which forgets the records already below the lag window (bounded
    memory). Content is hashed only where it counts: keys the last pull took, and the records that
    are inside the lag window when they are settled."""

    previous: CursorState
    lag: float
    watermark: Any = field(init=False)
    taken: int = field(default=0, init=False)
    _recent: deque[_Read] = field(default_factory=deque, init=False)
    _unsettled: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.watermark = self.previous.watermark

    def take(self, key: str, cursor: Any, record: Mapping[str, Any]) -> bool:
        """Whether a read record is new or changed (else the last pull took it unchanged)."""
        seen = self.previous.boundary.get(key)
        digest = None if seen is None else content_digest(record)
        fresh = seen is None or (digest not in seen and not (self.previous.former_digests
                                                             and _former_sql_digest(record) in seen))
        if cursor is not None:  # a record without a cursor value is never in the boundary
            self._recent.append(_Read(cursor, key, record if digest is None else None, digest))
            self._unsettled += 1
            if self.watermark is None or cursor > self.watermark:
                self.watermark = cursor
        self.taken += fresh
        return fresh

    def settle(self) -> None:
        """Forget the leading reads below the lag window, and keep only the digest of the records read since."""
        floor = _floor(self.previous.kind, self.watermark, self.lag)
        if floor is None:  # no cursor value read yet: nothing is remembered
            return
        while self._recent and self._recent[0].cursor < floor:
            self._recent.popleft()
            self._unsettled = min(self._unsettled, len(self._recent))
        # the unsettled reads are the newest ones; the floor only rises, so a read below it stays out
        for read in itertools.islice(reversed(self._recent), self._unsettled):
            if read.record is not None and read.cursor >= floor:
                read.digest = content_digest(read.record)
            read.record = None
        self._unsettled = 0

    def state(self) -> CursorState:
        """The state that covers every record read: the new watermark and the boundary inside its lag window."""
        self.settle()
        floor = _floor(self.previous.kind, self.watermark, self.lag)
        by_key: dict[str, set[str]] = {}
        for read in self._recent:
            if read.digest is not None and read.cursor >= floor:
                by_key.setdefault(read.key, set()).add(read.digest)
        boundary = {k: tuple(sorted(v)) for k, v in sorted(by_key.items())}
        return CursorState(self.previous.kind, self.watermark, boundary)
