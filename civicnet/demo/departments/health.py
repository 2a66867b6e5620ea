"""Synthetic health-department register of community health stations (社康中心、社康站).

The register is the "database" behind the department's demo API (`civicnet.demo.departments.api`): one JSON
object per line in `<home>/feeds/health/stations.jsonl`, in the department's own field names.
Every non-virtual community gets one or two stations (about 1,200 in all, at any scale); the
first is a centre in about a third of the communities. `updated_at` values fall on the hour over
the first week of June 2021, so many stations share one timestamp (a test of cursor ties).
`change_health` is the department's later round of edits: new staff counts and a few closures
(soft deletes), each stamped with a later `updated_at`.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from civicnet.demo.departments.facilities import short_community_name
from civicnet.demo.departments.residents import community_table
from schemas.divisions import Registry
from schemas.homefiles import make_folder, write_atomic
from schemas.layout import feeds_folder

HEALTH_FILE = Path("health/stations.jsonl")  # in the home's feeds folder
SHANGHAI = ZoneInfo("Asia/Shanghai")
FIRST_UPDATE = dt.datetime(2021, 6, 1, 8, tzinfo=SHANGHAI)
UPDATE_HOURS = 7 * 24
CHANGED_AT = "2021-06-20T10:00:00+08:00"
_OPENED_RANGE = (dt.date(2000, 1, 1), dt.date(2020, 12, 31))
_SECOND_STATION_SHARE = 0.5
_CENTRE_SHARE = 0.33
# kind → (lowest, highest) doctor count; nurses are one to two per doctor
_DOCTORS = {"社康中心": (8, 30), "社康站": (2, 8)}


def stations_path(home: Path) -> Path:
    """Where the health department's register lives under a civicnet home."""
    return feeds_folder(Path(home)) / HEALTH_FILE


def _station(code: str, short: str, sequence: int, centre: bool, rng: np.random.Generator) -> dict[str, Any]:
    """One station record in the department's own field names."""
    kind = "社康中心" if centre else "社康站"
    low, high = _DOCTORS[kind]
    doctors = int(rng.integers(low, high + 1))
    span = (_OPENED_RANGE[1] - _OPENED_RANGE[0]).days
    opened = _OPENED_RANGE[0] + dt.timedelta(days=int(rng.integers(0, span + 1)))
    updated = FIRST_UPDATE + dt.timedelta(hours=int(rng.integers(0, UPDATE_HOURS)))
    prefix = "" if sequence == 1 else "第二"
    return {"station_no": f"H{code}{sequence:02d}", "community_code": code, "station_name": f"{short}{prefix}{kind}",
            "kind": kind, "doctors": doctors, "nurses": int(doctors * rng.uniform(1.0, 2.0)),
            "opened": opened.isoformat(), "updated_at": updated.isoformat(), "deleted": False}


def draw_stations(registry: Registry, rng: np.random.Generator) -> list[dict[str, Any]]:
    """One or two stations per non-virtual community, in station number order."""
    table = community_table(registry)
    records: list[dict[str, Any]] = []
    for code, name in zip(table.codes.tolist(), table.names.tolist(), strict=True):
        count = 2 if rng.random() < _SECOND_STATION_SHARE else 1
        centre = rng.random() < _CENTRE_SHARE
        short = short_community_name(name)
        records.extend(_station(code, short, n, centre and n == 1, rng) for n in range(1, count + 1))
    return records


def write_stations(path: Path, records: list[dict[str, Any]]) -> None:
    """Write the register as UTF-8 JSON Lines, replacing the file in one step (the API may be reading it)."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    write_atomic(make_folder(path.parent) / path.name, text)


def read_stations(path: Path) -> list[dict[str, Any]]:
    """The register's records, in file order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def generate_health(home: Path, registry: Registry, scale: float, seed: int = 7) -> Path:
    """Write the health department's station register and return its path.

    `scale` is accepted like every demo generator's, but stations do not scale with residents:
    every community has its one or two stations at any scale."""
    path = stations_path(home)
    write_stations(path, draw_stations(registry, np.random.default_rng(seed)))
    return path


def change_health(home: Path, fraction: float, seed: int = 8) -> dict[str, int]:
    """Round two: `fraction` of the open stations report new doctor counts and a quarter of those
    (at least one) close (`deleted: true`), each stamped with a later `updated_at`; returns counts."""
    path = stations_path(home)
    records = read_stations(path)
    rng = np.random.default_rng(seed)
    open_rows = [i for i, r in enumerate(records) if not r.get("deleted")]
    n = min(len(open_rows), max(2, round(len(open_rows) * fraction)))
    picked = rng.choice(len(open_rows), size=n, replace=False).tolist()
    closed = set(picked[: max(1, n // 4)])
    for i in picked:
        row = open_rows[i]
        if i in closed:
            records[row] = {**records[row], "deleted": True, "updated_at": CHANGED_AT}
        else:
            doctors = max(0, int(records[row]["doctors"]) + int(rng.choice([-2, -1, 1, 2, 3])))
            records[row] = {**records[row], "doctors": doctors, "updated_at": CHANGED_AT}
    write_stations(path, records)
    return {"restaffed": n - len(closed), "closed": len(closed)}
