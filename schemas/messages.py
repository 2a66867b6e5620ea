"""How names taken from a sender's file appear in messages: as names, never as data.

A file whose header row is missing has its first record where the names should be: a citizen ID,
a name, a phone number. Messages about columns (wrong columns, repeated names) reach the sender, the
gateway's log and the Airflow task log, so a header cell that looks like a value is shown by its
position only, and long lists are cut.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# a run of 5+ digits (IDs, phones, codes), or a bare number or date: values, not column names
_LOOKS_LIKE_VALUE = re.compile(r"\d{5,}|^\s*\d+([.\-/:]\d+)*\s*$")
MAX_NAME = 40  # characters: a longer "name" is a value (an address, a note)
MAX_NAMES = 30  # names listed in one message; the rest are counted


def looks_like_value(name: str) -> bool:
    """True if a header cell looks like data rather than a column name."""
    return bool(_LOOKS_LIKE_VALUE.search(name)) or len(name) > MAX_NAME


def shown_name(name: str) -> str:
    """A column name as a message shows it: quoted, or a placeholder if it looks like a value."""
    return "<a value, not a name: is the header row missing?>" if looks_like_value(name) else repr(name)


def shown_names(names: Iterable[str]) -> str:
    """A list of column names as a message shows it: `['a', 'b']`, values masked, at most MAX_NAMES."""
    names = list(names)
    shown = [shown_name(n) for n in names[:MAX_NAMES]]
    if len(names) > MAX_NAMES:
        shown.append(f"... {len(names) - MAX_NAMES} more")
    return "[" + ", ".join(shown) + "]"


HEADER_MISSING = ("the first row holds values (such as IDs, phone numbers or dates), not column names: the header "
                  "row is probably missing; add it")


def header_looks_missing(names: Iterable[str | None]) -> bool:
    """True if any header cell looks like a value: then no cell of that row is shown (a name beside an
    ID is a person's name), and the message says the header row is missing."""
    return any(n is not None and looks_like_value(n) for n in names)


def excerpt_unless_data(text: str) -> str:
    """An excerpt of a source's unexpected output for a message, unless it looks like data (a JSON
    object or list, possibly a record with personal data): then only its size."""
    if text.lstrip()[:1] in ("{", "["):
        return f"<{len(text)} characters of JSON, not shown: they may hold a record>"
    return repr(text)
