"""Synthetic justice-bureau register of people's mediation committees, read by the demo Singer tap.

One committee per non-virtual community, written as a JSON list to
`<home>/feeds/justice/committees.json`; `change_justice` is the bureau's later round of edits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from civicnet.demo.departments.facilities import short_community_name
from civicnet.demo.departments.residents import GIVEN_CHARS, SURNAMES, community_table
from schemas.divisions import Registry
from schemas.homefiles import make_folder, write_atomic
from schemas.layout import feeds_folder

JUSTICE_FILE = Path("justice/committees.json")  # in the home's feeds folder
UPDATED_AT = "2021-06-01T09:00:00+08:00"
CHANGED_AT = "2021-06-20T10:00:00+08:00"


def committees_path(home: Path) -> Path:
    """Where the justice bureau's register lives under a civicnet home."""
    return feeds_folder(Path(home)) / JUSTICE_FILE


def chair_names(n: int, rng: np.random.Generator) -> list[str]:
    """`n` Chinese names: a surname and one or two given characters."""
    surname = SURNAMES[rng.integers(0, SURNAMES.size, size=n)]
    # the last GIVEN_CHARS entry is empty: as the second character it makes a one-character given name
    first = GIVEN_CHARS[rng.integers(0, GIVEN_CHARS.size - 1, size=n)]
    second = GIVEN_CHARS[rng.integers(0, GIVEN_CHARS.size, size=n)]
    return [str(name) for name in surname + first + second]


def draw_committees(registry: Registry, rng: np.random.Generator) -> list[dict[str, Any]]:
    """One mediation committee per non-virtual community, in community code order."""
    table = community_table(registry)
    n = table.codes.size
    chairs = chair_names(n, rng)
    members = rng.integers(3, 16, size=n)
    cases = rng.integers(0, 201, size=n)
    return [
        {"id": f"M{code}", "community": str(code), "name": f"{short_community_name(str(name))}人民调解委员会",
         "chair": chairs[i], "members": int(members[i]), "cases_this_year": int(cases[i]), "updated_at": UPDATED_AT}
        for i, (code, name) in enumerate(zip(table.codes, table.names, strict=True))
    ]


def write_committees(path: Path, records: list[dict[str, Any]]) -> None:
    """Write the register as a UTF-8 JSON list (replacing the file in one step)."""
    write_atomic(make_folder(path.parent) / path.name, json.dumps(records, ensure_ascii=False, indent=1) + "\n")


def generate_justice(home: Path, registry: Registry, seed: int = 11) -> Path:
    """Write the justice bureau's mediation-committee register and return its path."""
    path = committees_path(home)
    write_committees(path, draw_committees(registry, np.random.default_rng(seed)))
    return path


def change_justice(home: Path, fraction: float, seed: int = 12) -> dict[str, int]:
    """Round two: `fraction` of the committees report more cases, stamped with a later `updated_at`."""
    path = committees_path(home)
    records: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    rng = np.random.default_rng(seed)
    n = min(len(records), max(1, round(len(records) * fraction)))
    for i in sorted(rng.choice(len(records), size=n, replace=False).tolist()):
        records[i] = {**records[i], "cases_this_year": int(records[i]["cases_this_year"]) + int(rng.integers(1, 20)),
                      "updated_at": CHANGED_AT}
    write_committees(path, records)
    return {"changed": n}
