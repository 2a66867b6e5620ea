"""CSV cells a spreadsheet would evaluate are quoted; numbers in number columns stay numbers."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.csvsafe import CONTROL_STARTS, FORMULA_STARTS, is_formula, safe_cell, safe_row

BLANKS = " \u00a0\u3000\u200b\ufeff"  # space, NBSP, ideographic space, zero-width space, BOM


def read_back(cells: list[str]) -> list[str]:
    """The cells as a spreadsheet's CSV reader sees them after csv.writer wrote them."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(cells)
    return next(csv.reader(io.StringIO(out.getvalue())))


@pytest.mark.parametrize("text", [
    "=1+1", "-2+3+cmd|' /C calc'!A0", "+1", "@SUM(A1)", "\tx", "\rx", "\nx", " =1", "\u3000=1", "\u00a0+1",
    "\u200b@A1", "＝1+1", "＋1", "－2+3", "＠SUM(A1)", "-5", "-", "+", "=",
], ids=["equals", "dde-minus", "plus", "at", "tab", "cr", "lf", "space-equals", "ideographic-space",
        "nbsp-plus", "zero-width-at", "fullwidth-equals", "fullwidth-plus", "fullwidth-minus", "fullwidth-at",
        "negative-as-text", "bare-minus", "bare-plus", "bare-equals"])
def test_a_text_cell_a_spreadsheet_would_evaluate_is_quoted(text: str) -> None:
    assert safe_cell(text) == "'" + text
    assert read_back([safe_cell(text)]) == ["'" + text]


@pytest.mark.parametrize("text", ["社区", "a=b", "1+1", "E5", "'=already", "", "x-1", "(1)"],
                         ids=["chinese", "inner-equals", "digit-first", "key", "apostrophe", "empty", "inner-minus",
                              "paren"])
def test_a_harmless_text_cell_is_kept(text: str) -> None:
    assert safe_cell(text) == text


@pytest.mark.parametrize(("value", "numeric", "expected"), [
    ("-5", True, "-5"), ("-2.5", True, "-2.5"), ("+3", True, "+3"), ("-1e-3", True, "-1e-3"), (".5", True, ".5"),
    ("-2+3", True, "'-2+3"), ("-5 ", True, "'-5 "), ("－5", True, "'－5"), ("=5", True, "'=5"),
    ("-inf", True, "'-inf"), (-5, False, "-5"), (-2.5, False, "-2.5"), (float("-inf"), False, "'-inf"),
    (True, False, "True"), (None, False, ""), ("-5", False, "'-5"),
], ids=["negative", "negative-decimal", "plus-sign", "exponent", "leading-dot", "expression", "trailing-space",
        "fullwidth-minus", "equals", "inf-text", "int", "float", "float-inf", "bool", "none", "negative-in-text"])
def test_number_columns_keep_plain_numbers(value: object, numeric: bool, expected: str) -> None:
    assert safe_cell(value, numeric=numeric) == expected


_DANGER = st.sampled_from(FORMULA_STARTS + CONTROL_STARTS)
_BLANK = st.text(alphabet=BLANKS, max_size=3)


@given(blank=_BLANK, start=_DANGER, rest=st.text(max_size=30))
def test_no_dangerous_start_survives(blank: str, start: str, rest: str) -> None:
    text = (blank + start + rest) if start not in CONTROL_STARTS else (start + blank + rest)
    cell = safe_cell(text)
    assert cell == "'" + text
    assert not is_formula(read_back([cell])[0])


@given(value=st.one_of(st.text(max_size=30), st.integers(), st.floats(), st.none()), numeric=st.booleans())
def test_every_cell_is_safe_and_keeps_its_text(value: object, numeric: bool) -> None:
    cell = safe_cell(value, numeric=numeric)
    text = "" if value is None else str(value)
    assert cell in (text, "'" + text)
    if is_formula(cell):  # only a plain number in a number column may start with + or -
        assert numeric or isinstance(value, (int, float))
        assert set(cell) <= set("0123456789+-.eE") and float(cell) == float(text)


def test_safe_row_quotes_every_cell() -> None:
    assert safe_row([1, "=x", None, "ok", -3]) == ["1", "'=x", "", "ok", "-3"]
