"""CSV cells a spreadsheet cannot run: the one defence against formula (CSV) injection.

Excel, WPS (common in Chinese government offices) and LibreOffice evaluate a cell whose text
starts with `=`, `+`, `-` or `@` as a formula (`-2+3+cmd|' /C calc'!A0` starts a program), also
after leading blanks, and a cell starting with TAB, CR or LF is handled the same way by some of
them; WPS and Excel in East Asian locales also take the full-width forms (`＝ ＋ － ＠`). Following
OWASP's guidance, such a cell is written with a leading apostrophe, which the spreadsheet shows
as text. Every CSV civicnet writes passes its cells through `safe_cell`.

A number is never a formula: a cell of a number-typed column (a contract field of type integer
or number, or a Python number) that is a plain number literal in full (`-5`, `-2.5`, `1e-3`) is
kept as it is, so a spreadsheet still reads it as a number; anything else in such a column, and
any text cell starting with a dangerous character (`-2+3`, `-5` in a text column), is quoted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal

# ASCII, full-width (U+FF1D U+FF0B U+FF0D U+FF20), small-form (U+FE66 U+FE62 U+FE63 U+FE6B) and U+2212.
FORMULA_STARTS = "=+-@\uff1d\uff0b\uff0d\uff20\ufe66\ufe62\ufe63\ufe6b\u2212"
CONTROL_STARTS = "\t\r\n"
# A dangerous start, at the very beginning for TAB/CR/LF, or after any blanks (Unicode spaces such
# as U+3000 and NBSP, and zero-width characters a spreadsheet skips).
_FORMULA = re.compile(rf"[{CONTROL_STARTS}]|[\s\u200b-\u200d\u2060\ufeff]*[{re.escape(FORMULA_STARTS)}]")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
PREFIX = "'"


def is_formula(text: str) -> bool:
    """Whether a spreadsheet could evaluate this cell text (as a formula, or after a control character)."""
    return _FORMULA.match(text) is not None


def is_number_literal(text: str) -> bool:
    """Whether the text is, in full, a plain ASCII number literal (which no spreadsheet runs as a formula)."""
    return _NUMBER.fullmatch(text) is not None


def safe_cell(value: object, *, numeric: bool = False) -> str:
    """The text to write in a CSV cell for `value`: '' for None, prefixed with an apostrophe if a
    spreadsheet would evaluate it.

    `numeric` says the cell belongs to a number-typed column; Python numbers count as numeric.
    A numeric cell that is a plain number literal is kept unquoted (`-5` stays a number)."""
    if value is None:
        return ""
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        numeric = True
    text = str(value)
    if numeric and is_number_literal(text):
        return text
    return PREFIX + text if is_formula(text) else text


def safe_row(cells: Iterable[object]) -> list[str]:
    """`safe_cell` over a row of text cells (Python numbers among them stay numbers)."""
    return [safe_cell(c) for c in cells]
