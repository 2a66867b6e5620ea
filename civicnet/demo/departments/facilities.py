"""Synthetic civil-affairs facility register (art. 16 facilities of every community) in SQLite.

Facilities do not scale with residents: every non-virtual community gets 6-9 of the art. 16
types, with floor areas around the statutory minimum (about a fifth fall short of it).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from civicnet.demo.departments.residents import ROADS, Array, CommunityTable, Rng, zero_padded

TABLE = "community_facility"
# art. 16: type → (name suffix, minimum floor area in m²); the two offices are separate rows
FACILITY_TYPES: dict[str, tuple[str, float]] = {
    "residents_committee_office": ("居委会办公室", 200.0),
    "work_station_office": ("工作站办公室", 200.0),
    "party_activity_room": ("党员活动室", 100.0),
    "police_office": ("警务室", 50.0),
    "mediation_room": ("综治维稳调解室", 50.0),
    "health_service_centre": ("健康服务中心", 400.0),
    "starlight_elderly_home": ("星光老年之家", 200.0),
    "library": ("图书室", 100.0),
    "outdoor_sports_square": ("室外体育广场", 1000.0),
}
# offices exist almost everywhere; the other rooms are what surveys find missing
_PRESENCE_WEIGHT = np.array([8.0, 8.0, 1.5, 1.5, 1.0, 1.0, 1.0, 1.0, 1.0])
_AREA_SIGMA = 0.3
_AREA_MU = 0.8416 * _AREA_SIGMA  # puts 20 % of areas below the minimum
_OPENING_RANGE = np.array(["1995-01-01", "2020-10-31"], dtype="M8[D]")
_SURVEY_START = dt.datetime(2020, 11, 2, 9, tzinfo=ZoneInfo("Asia/Shanghai"))
PLANTED_PER_KIND = 3
_BAD_DATES = ("2008-13-01", "2010-02-30", "2015-00-10")
_BAD_AREAS = (-12.5, 0.0, -1.0)
COLUMNS = ("fac_no", "comm_code", "fac_type", "fac_name", "area", "addr", "open_date", "updated_at", "is_deleted")
# round two of the demo: the register is edited on this day (ISO text, as the department stores it)
_EDIT_TIME = "2021-06-20T10:00:00+08:00"


def short_community_name(name: str) -> str:
    """大塘龙社区居民委员会 → 大塘龙社区: the committee's name without the committee."""
    for suffix in ("居民委员会", "居委会"):
        name = name.removesuffix(suffix)
    return name if name.endswith("社区") else name + "社区"


def choose_facilities(n_comm: int, rng: Rng) -> tuple[Array, Array, Array]:
    """(community index, type index, sequence number) of every facility, 6-9 per community."""
    keys = rng.random((n_comm, _PRESENCE_WEIGHT.size)) ** (1.0 / _PRESENCE_WEIGHT)
    # weighted sampling without replacement (Efraimidis-Spirakis keys)
    position = np.argsort(np.argsort(-keys, axis=1), axis=1)
    chosen = position < rng.integers(6, 10, size=n_comm)[:, None]
    comm, kind = np.nonzero(chosen)
    sequence = np.cumsum(chosen, axis=1)[comm, kind]
    return comm, kind, sequence


def draw_facility_columns(table: CommunityTable, rng: Rng) -> dict[str, Array]:
    """Every facility row as text and number columns, good rows only."""
    comm, kind, sequence = choose_facilities(table.codes.size, rng)
    n = comm.size
    types = np.array(list(FACILITY_TYPES), dtype=object)
    suffixes = np.array([s for s, _ in FACILITY_TYPES.values()], dtype=object)
    minimum = np.array([m for _, m in FACILITY_TYPES.values()])
    short = np.array([short_community_name(x) for x in table.names], dtype=object)
    span = int((_OPENING_RANGE[1] - _OPENING_RANGE[0]).astype(np.int64)) + 1
    opened = _OPENING_RANGE[0] + rng.integers(0, span, size=n)
    # wall-clock time in Asia/Shanghai; the +08:00 offset is written out with it
    local = np.datetime64(_SURVEY_START.replace(tzinfo=None), "s")
    updated = local + rng.integers(0, 28 * 86_400, size=n).astype("m8[s]")
    number = rng.integers(1, 300, size=n).astype("U3").astype(object)
    return {
        "fac_no": "F" + table.codes[comm] + zero_padded(sequence, 3),
        "comm_code": table.codes[comm],
        "fac_type": types[kind],
        "fac_name": short[comm] + suffixes[kind],
        "area": np.round(minimum[kind] * rng.lognormal(_AREA_MU, _AREA_SIGMA, size=n), 1),
        "addr": table.district_names[comm] + table.street_names[comm] + short[comm]
        + ROADS[rng.integers(0, ROADS.size, size=n)] + number + "号",
        "open_date": opened.astype("U10").astype(object),
        "updated_at": updated.astype("U19").astype(object) + "+08:00",
        "is_deleted": np.zeros(n, dtype=np.int64),
    }


def plant_facility_defects(
    columns: dict[str, Array], rng: Rng
) -> tuple[dict[str, Array], list[dict[str, Any]]]:
    """New columns with three rows each of unknown_division, invalid_date and out_of_range."""
    rows = rng.choice(columns["fac_no"].size, size=3 * PLANTED_PER_KIND, replace=False)
    unknown, bad_date, bad_area = np.split(rows, 3)
    out = {name: values.copy() for name, values in columns.items()}
    out["comm_code"][unknown] = [c[:9] + "997" for c in out["comm_code"][unknown]]
    out["open_date"][bad_date] = list(_BAD_DATES[:PLANTED_PER_KIND])
    out["area"][bad_area] = list(_BAD_AREAS[:PLANTED_PER_KIND])
    planted = [
        {"fac_no": str(out["fac_no"][row]), "reason": reason}
        for reason, members in (
            ("unknown_division", unknown), ("invalid_date", bad_date), ("out_of_range", bad_area)
        )
        for row in sorted(members.tolist())
    ]
    return out, planted


def write_facilities(path: Path, table: CommunityTable, rng: Rng) -> dict[str, Any]:
    """Write the SQLite facility table (replacing any old file) and return its planted report."""
    columns, planted = plant_facility_defects(draw_facility_columns(table, rng), rng)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    rows = list(zip(*(columns[c].tolist() for c in COLUMNS), strict=True))
    # fac_no is deliberately not a PRIMARY KEY: a department table does not promise uniqueness
    types = {"area": "REAL", "is_deleted": "INTEGER NOT NULL DEFAULT 0"}
    ddl = ", ".join(f"{c} {types.get(c, 'TEXT')}" for c in COLUMNS)
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE {TABLE} ({ddl})")
        conn.executemany(f"INSERT INTO {TABLE} VALUES ({', '.join('?' * len(COLUMNS))})", rows)
    conn.close()
    counts = {reason: sum(p["reason"] == reason for p in planted) for reason in
              ("unknown_division", "invalid_date", "out_of_range")}
    return {"table": TABLE, "rows": len(rows), "planted": counts, "planted_rows": planted}


def edit_facilities(path: Path, fraction: float, seed: int = 20050224) -> dict[str, int]:
    """Round two: civil affairs re-measures `fraction` of the clean facilities and closes a few
    (soft delete: `is_deleted` = 1), stamping each edit's `updated_at`; returns the counts."""
    rng = np.random.default_rng(seed)
    with sqlite3.connect(path) as conn:
        rows = conn.execute(f"""SELECT rowid, area FROM {TABLE} WHERE is_deleted = 0 AND area > 0
                                AND open_date LIKE '____-__-__' ORDER BY rowid""").fetchall()
        n = max(2, int(len(rows) * fraction))
        picked = rng.choice(len(rows), size=min(n, len(rows)), replace=False)
        closed = {int(i) for i in picked[: max(1, len(picked) // 4)]}
        for i in picked:
            rowid, area = rows[int(i)]
            if int(i) in closed:
                conn.execute(f"UPDATE {TABLE} SET is_deleted = 1, updated_at = ? WHERE rowid = ?", [_EDIT_TIME, rowid])
            else:
                conn.execute(f"UPDATE {TABLE} SET area = ?, updated_at = ? WHERE rowid = ?",
                             [round(float(area) * 1.1, 1), _EDIT_TIME, rowid])
    conn.close()
    return {"remeasured": len(picked) - len(closed), "closed": len(closed)}
