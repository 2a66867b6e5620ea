"""Dates a record cannot have: a move-in after today, a facility opening in an absurd year."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from connectors.feeds import load_feeds
from quality.conform import LINE, SourceMapping, conform_batch
from schemas.contract import load_contracts
from schemas.divisions import load_registry

AS_OF = dt.date(2021, 6, 30)
FEED = load_feeds()["civil_affairs_facilities"]
MAPPING = SourceMapping(FEED.slug, FEED.fields, FEED.values, FEED.dates, FEED.constants, tuple(FEED.ignore),
                        FEED.deleted)
CONTRACT = load_contracts()["facilities"]
REGISTRIES = {2020: load_registry()}


def facility(n: int, opened: str) -> dict[str, str]:
    return {"fac_no": f"F440304001018{n:03d}", "comm_code": "440304001018", "fac_type": "library",
            "fac_name": "图书室", "area": "120", "addr": "滨江路1号", "open_date": opened, "is_deleted": "0"}


@pytest.mark.parametrize(("opened", "accepted"), [
    ("2021-01-01", True), ("2029-06-30", True),  # planned within ten years: applied (and warned by the gate)
    ("9999-12-31", False), ("2201-01-01", False), ("1850-01-01", False),
], ids=["past", "planned", "9999", "mistyped-century", "before-1900"])
def test_an_opening_date_in_an_absurd_year_is_quarantined(opened: str, accepted: bool) -> None:
    row = facility(1, opened)
    raw = pa.table({**{c: pa.array([row.get(c)], pa.string()) for c in MAPPING.source_columns},
                    LINE: pa.array([1], pa.int64())})
    result = conform_batch(raw, CONTRACT, MAPPING, REGISTRIES, AS_OF)
    assert result.accepted.num_rows == (1 if accepted else 0)
    if not accepted:
        (quarantined,) = result.quarantined.to_pylist()
        assert [(r["code"], r["field"]) for r in quarantined["reasons"]] == \
            [("opening_date_implausible", "opening_date")]
