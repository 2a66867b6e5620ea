"""The custom expectations' SQL conditions agree with the Python reference, value by value."""

from __future__ import annotations

import datetime as dt
import random

import pytest
import sqlalchemy as sa

from quality.expectations import citizen_id_condition, division_codes, division_condition
from schemas.citizen_id import check_char, is_valid
from schemas.divisions import load_registry

TODAY = dt.date(2021, 6, 30)


def _ids() -> list[str]:
    rng = random.Random(11643)
    out = []
    for _ in range(3000):
        born = dt.date(1900, 1, 1) + dt.timedelta(days=rng.randrange(0, 44000))
        first17 = f"{rng.randrange(110000, 660000)}{born:%Y%m%d}{rng.randrange(0, 1000):03d}"
        good = first17 + check_char(first17)
        out.append(good)
        out.append(first17 + rng.choice([c for c in "0123456789X" if c != good[-1]]))  # wrong check
    for date in ("19000229", "20000229", "20010229", "19991131", "19990015", "19991301", "20210701", "20210630"):
        first17 = f"440304{date}001"
        out.append(first17 + check_char(first17))
    out += ["", "44030419900101001", "4403041990010100123", "44030419900101001x", "A40304199001010010",
            "４40304199001010010"]
    return out


@pytest.fixture(scope="module")
def engine() -> sa.Engine:
    return sa.create_engine("duckdb:///:memory:")


def test_the_gb11643_condition_agrees_with_the_python_check(engine: sa.Engine) -> None:
    values = _ids()
    table = sa.table("ids", sa.column("v", sa.String))
    with engine.connect() as con:
        con.execute(sa.text("CREATE TABLE ids (v VARCHAR)"))
        con.execute(sa.text("INSERT INTO ids VALUES (:v)"), [{"v": v} for v in values])
        got = dict(con.execute(sa.select(table.c.v, citizen_id_condition(table.c.v, TODAY))).fetchall())
    wrong = {v: got[v] for v in values if got[v] != is_valid(v, TODAY)}
    assert wrong == {}
    assert sum(got.values()) > 3000  # the good half (and the real dates among the edge cases)


def test_the_division_condition_accepts_exactly_the_vintage_codes_of_the_tier(engine: sa.Engine) -> None:
    registry = load_registry(2020)
    rows = [(d.code, 2020) for d in registry.divisions.values()]
    rows += [("440304001999", 2020), (registry.root().code, 2019)]
    table = sa.table("divs", sa.column("code", sa.String), sa.column("vintage", sa.Integer))
    with engine.connect() as con:
        con.execute(sa.text("CREATE OR REPLACE TABLE divs (code VARCHAR, vintage INTEGER)"))
        con.execute(sa.text("INSERT INTO divs VALUES (:c, :v)"), [{"c": c, "v": v} for c, v in rows])
        for tier in ("community", "street", "any"):
            ok = {c for c, yes in con.execute(sa.select(table.c.code, division_condition(
                table.c.code, table.c.vintage, tier)).where(table.c.vintage == 2020)).fetchall() if yes}
            assert ok == set(division_codes(2020, tier)), tier
