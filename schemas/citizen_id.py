"""GB 11643 citizen identity numbers: 17 digits plus a MOD 11-2 check character."""

from __future__ import annotations

import datetime as dt
import re

WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"
PATTERN = r"^\d{17}[\dX]$"
_RE = re.compile(PATTERN, re.ASCII)


def check_char(first17: str) -> str:
    """Return the check character for the first 17 digits."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError(f"expected 17 digits, got {len(first17)} characters")  # never the value: it is personal data
    total = sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def birth_date_of(citizen_id: str) -> dt.date | None:
    """Return the birth date in digits 7-14, or None if they are not a real date."""
    try:
        return dt.date(int(citizen_id[6:10]), int(citizen_id[10:12]), int(citizen_id[12:14]))
    except ValueError:
        return None


def is_valid(citizen_id: object, today: dt.date) -> bool:
    """True if the value is a well-formed GB 11643 number with a real past birth date."""
    if not isinstance(citizen_id, str) or not _RE.fullmatch(citizen_id):
        return False
    born = birth_date_of(citizen_id)
    if born is None or born > today:
        return False
    return check_char(citizen_id[:17]) == citizen_id[17]


def sex_of(citizen_id: str) -> str:
    """GB/T 2261.1 sex code from the 17th digit: '1' (male) if odd, '2' (female) if even."""
    return "1" if int(citizen_id[16]) % 2 == 1 else "2"
