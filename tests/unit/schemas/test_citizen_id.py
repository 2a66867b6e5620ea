"""GB 11643 citizen IDs: properties of the Python check, and the SQL check agreeing with it."""

from __future__ import annotations

import datetime as dt
import string
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quality.sql import citizen_id_valid_sql
from schemas.citizen_id import check_char, is_valid, sex_of

TODAY = dt.date(2021, 6, 30)
DIGITS = "0123456789"
# A known-good ID: 福田 region, born 1990-01-01, sequence 123 (odd: a man).
GOOD = "44030419900101123" + check_char("44030419900101123")
FULLWIDTH = str.maketrans(DIGITS, "０１２３４５６７８９")


@st.composite
def citizen_ids(draw: st.DrawFn, born_max: dt.date = TODAY) -> str:
    """A valid ID: random region and sequence digits, a real date up to `born_max`, its check char."""
    region = draw(st.text(DIGITS, min_size=6, max_size=6))
    born = draw(st.dates(min_value=dt.date(1, 1, 1), max_value=born_max))
    sequence = draw(st.text(DIGITS, min_size=3, max_size=3))
    first17 = f"{region}{born.year:04d}{born.month:02d}{born.day:02d}{sequence}"
    return first17 + check_char(first17)


@st.composite
def mangled_ids(draw: st.DrawFn) -> str:
    """A valid ID broken in one of the ways real feeds break them."""
    cid = draw(citizen_ids())
    i = draw(st.integers(0, 17))
    how = draw(st.sampled_from(["replace", "delete", "insert", "truncate", "swap", "lower_x",
                                "fullwidth", "pad"]))
    if how == "replace":
        return cid[:i] + draw(st.characters()) + cid[i + 1:]
    if how == "delete":
        return cid[:i] + cid[i + 1:]
    if how == "insert":
        return cid[:i] + draw(st.characters()) + cid[i:]
    if how == "truncate":
        return cid[:i]
    if how == "swap":
        j = draw(st.integers(0, 17))
        chars = list(cid)
        chars[i], chars[j] = chars[j], chars[i]
        return "".join(chars)
    if how == "lower_x":
        return cid[:17] + "x"
    if how == "fullwidth":
        return cid[:i] + cid[i].translate(FULLWIDTH) + cid[i + 1:]
    return draw(st.sampled_from([" ", "\n", "\t"])) + cid if i % 2 else cid + draw(
        st.sampled_from([" ", "\n", "\t"]))


ANY_ID_TEXT = st.one_of(
    citizen_ids(),
    mangled_ids(),
    st.from_regex(r"[0-9]{17}[0-9X]", fullmatch=True),  # right form, mostly wrong check or date
    st.text(max_size=20),
)


def sql_is_valid(con: duckdb.DuckDBPyConnection, values: list[str | None]) -> list[bool]:
    """Evaluate quality.sql's check over the values as one Arrow column, as conform does."""
    con.register("ids", pa.table({"i": pa.array(range(len(values)), pa.int64()),
                                  "v": pa.array(values, pa.string())}))
    try:
        rows = con.sql(f"SELECT coalesce({citizen_id_valid_sql('v', TODAY)}, false) "
                       "FROM ids ORDER BY i").fetchall()
    finally:
        con.unregister("ids")
    return [bool(r[0]) for r in rows]


# --- the Python check ------------------------------------------------------------------------------

def test_known_good_id() -> None:
    assert GOOD == "440304199001011233"
    assert is_valid(GOOD, TODAY)
    assert sex_of(GOOD) == "1"


@pytest.mark.parametrize(
    ("first17", "char"),
    [("11010519491231002", "X"), ("44030419900101123", "3"), ("00000000000000000", "1")],
    ids=["x-check", "digit-check", "all-zero"],
)
def test_check_char_known_values(first17: str, char: str) -> None:
    assert check_char(first17) == char


@pytest.mark.parametrize("bad", ["1234", "4403041990010112X", "44030419900101123a", ""],
                         ids=["short", "x-inside", "letter", "empty"])
def test_check_char_refuses_anything_but_17_digits(bad: str) -> None:
    with pytest.raises(ValueError, match="expected 17 digits"):
        check_char(bad)


@given(cid=citizen_ids())
def test_built_ids_are_valid(cid: str) -> None:
    assert len(cid) == 18
    assert is_valid(cid, TODAY)


@given(cid=citizen_ids(), data=st.data())
def test_changing_one_character_makes_an_id_invalid(cid: str, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, 17), label="position")
    alphabet = string.ascii_letters + string.digits + string.punctuation + " "
    new = data.draw(st.sampled_from(alphabet).filter(lambda c: c != cid[i]), label="replacement")
    assert not is_valid(cid[:i] + new + cid[i + 1:], TODAY)


@given(cid=citizen_ids(), data=st.data())
def test_any_other_check_character_is_invalid(cid: str, data: st.DataObject) -> None:
    other = data.draw(st.sampled_from("0123456789Xx").filter(lambda c: c != cid[17]))
    assert not is_valid(cid[:17] + other, TODAY)


@given(cid=citizen_ids(born_max=dt.date(9999, 12, 31)))
def test_future_birth_date_is_invalid(cid: str) -> None:
    born = dt.date(int(cid[6:10]), int(cid[10:12]), int(cid[12:14]))
    assert is_valid(cid, TODAY) is (born <= TODAY)


@pytest.mark.parametrize(
    "bad",
    [GOOD.translate(FULLWIDTH), GOOD[:6] + GOOD[6].translate(FULLWIDTH) + GOOD[7:], GOOD + "\n",
     "\u0664" + GOOD[1:]],
    ids=["all-fullwidth", "one-fullwidth", "trailing-newline", "arabic-indic-4"],
)
def test_only_ascii_digits_count(bad: str) -> None:
    # GB 11643 IDs are ASCII: a full-width or Arabic-Indic digit, or a trailing newline, is
    # not the same ID and must not pass (the SQL check, using RE2, already refuses them).
    assert not is_valid(bad, TODAY)


@given(value=st.one_of(st.text(), st.binary(), st.integers(), st.floats(), st.none(),
                       st.lists(st.text()), st.from_regex(r"\d{17}[\dX]", fullmatch=True)))
def test_is_valid_never_raises(value: Any) -> None:
    assert is_valid(value, TODAY) in (True, False)


@given(cid=citizen_ids())
def test_sex_follows_the_parity_of_the_17th_digit(cid: str) -> None:
    assert sex_of(cid) == ("1" if int(cid[16]) % 2 else "2")
    flipped = cid[:16] + str((int(cid[16]) + 1) % 10)
    assert sex_of(flipped) != sex_of(cid)


# --- the SQL check agrees with the Python one ----------------------------------------------------

def test_sql_check_agrees_with_python_on_generated_batches() -> None:
    con = duckdb.connect()

    @settings(max_examples=200, deadline=None)
    @given(values=st.lists(ANY_ID_TEXT, min_size=1, max_size=8))
    def agree(values: list[str]) -> None:
        assert sql_is_valid(con, values) == [is_valid(v, TODAY) for v in values]

    try:
        agree()
    finally:
        con.close()


def test_sql_check_accepts_valid_ids_and_refuses_null() -> None:
    con = duckdb.connect()
    try:
        assert sql_is_valid(con, [GOOD, None, GOOD[:17] + "0"]) == [True, False, False]
    finally:
        con.close()


@pytest.mark.parametrize(
    "value",
    [
        "44030400000101123" + check_char("44030400000101123"),
        GOOD.translate(FULLWIDTH),
        GOOD + "\n",
        "不详",
        "44030419900101123a",
        "4403041990O1011233",
    ],
    ids=["year-0000", "fullwidth", "trailing-newline", "chinese-text", "letter-at-end",
         "letter-o-for-zero"],
)
def test_sql_check_agrees_with_python_on_edge_cases(value: str) -> None:
    con = duckdb.connect()
    try:
        # next to a valid ID, as in a real batch (a lone constant can be folded away)
        assert sql_is_valid(con, [GOOD, value]) == [True, is_valid(value, TODAY)]
    finally:
        con.close()
