"""Bad rows planted in the demo residents feed: a known number of each kind, one defect per row.

The quality gates downstream must find exactly these rows, by their stable reason codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from civicnet.demo.departments.residents import (
    CHECK_OBJ,
    GIVEN_CHARS,
    RARE_CHARS,
    SURNAMES,
    Array,
    CommunityTable,
    DemoDataError,
    Population,
    Rng,
    names_of,
    render_fields,
)

REASONS = ("invalid_citizen_id", "unknown_division", "duplicate_key", "invalid_date", "mojibake")
PLANTED_SHARE = 0.0005
RARE_SHARE = 0.0001  # rows per rare character whose name must survive the GB18030 round trip
# a community segment that no 2020 street uses, so street code + 997 is well formed but unknown
UNKNOWN_COMMUNITY_SEGMENT = "997"
# duplicates copy what makes the key consistent (the ID's birth date and sex) from the original
_DUPLICATE_COPIES = ("citizen_id", "sex", "birth_date", "residence_type", "moved_in_date")

Edits = dict[str, dict[int, str]]  # field → row → replacement text


@dataclass(frozen=True)
class Planting:
    """Replacement text for planted rows, the report of them, and the rare-character rows."""

    edits: Edits
    planted_rows: list[dict[str, Any]]
    rare_rows: Array


def planted_per_kind(rows: int) -> int:
    """How many rows of each kind a file of this many data rows gets."""
    return max(3, round(rows * PLANTED_SHARE))


def plant_defects(
    pop: Population, table: CommunityTable, labels: dict[str, dict[str, str]], rng: Rng
) -> Planting:
    """Choose the planted rows and their replacement text; every other row stays good."""
    n = pop.comm.size
    per_kind = planted_per_kind(n)
    per_char = max(1, round(n * RARE_SHARE))
    needed = per_kind * (len(REASONS) + 1) + per_char * len(RARE_CHARS)
    if n <= needed:
        raise DemoDataError(
            f"the demo scale gives {n} residents, too few to plant {needed} special rows; "
            "use a scale of at least 0.0001"
        )
    picks = rng.choice(n, size=needed, replace=False)
    groups = dict(zip(REASONS, np.split(picks[: per_kind * 5], 5), strict=True))
    pairs = picks[per_kind * 5 : per_kind * 6]
    originals = np.minimum(groups["duplicate_key"], pairs)
    groups["duplicate_key"] = np.maximum(groups["duplicate_key"], pairs)
    edits = _merge(
        _wrong_check_chars(pop, groups["invalid_citizen_id"], rng),
        _unknown_divisions(pop, table, groups["unknown_division"]),
        _duplicates(pop, table, labels, groups["duplicate_key"], originals),
        _invalid_birth_dates(pop, groups["invalid_date"], rng),
        _mojibake_names(pop, groups["mojibake"], rng),
        _rare_names(pop, picks[per_kind * 6 :].reshape(len(RARE_CHARS), per_char)),
    )
    return Planting(edits, _report(pop, table, labels, groups, edits), picks[per_kind * 6 :])


def _merge(*parts: Edits) -> Edits:
    merged: Edits = {}
    for part in parts:
        for field, rows in part.items():
            merged.setdefault(field, {}).update(rows)
    return merged


def _by_row(rows: Array, texts: Array | list[str]) -> dict[int, str]:
    return dict(zip(rows.tolist(), list(texts), strict=True))


def _wrong_check_chars(pop: Population, rows: Array, rng: Rng) -> Edits:
    wrong = (pop.check[rows].astype(np.int64) + rng.integers(1, 11, size=rows.size)) % 11
    ids = pop.id17[rows].astype("U17").astype(object) + CHECK_OBJ[wrong]
    return {"citizen_id": _by_row(rows, ids)}


def _unknown_divisions(pop: Population, table: CommunityTable, rows: Array) -> Edits:
    streets = table.street_codes[pop.comm[rows]]
    return {"division_code": _by_row(rows, [s[:9] + UNKNOWN_COMMUNITY_SEGMENT for s in streets])}


def _duplicates(
    pop: Population, table: CommunityTable, labels: dict[str, dict[str, str]],
    rows: Array, originals: Array,
) -> Edits:
    """Later rows take an earlier row's ID (and the birth date and sex it encodes)."""
    copied = render_fields(pop, table, originals, labels)
    return {field: _by_row(rows, copied[field]) for field in _DUPLICATE_COPIES}


def _invalid_birth_dates(pop: Population, rows: Array, rng: Rng) -> Edits:
    years = (pop.birth[rows].astype("M8[Y]").astype(np.int64) + 1970).tolist()
    shapes = rng.integers(0, 5, size=rows.size).tolist()
    texts = [
        (f"{y}-02-30", "不详", f"{y}-13-01", f"{y}-04-31", "0000-00-00")[s]
        for y, s in zip(years, shapes, strict=True)
    ]
    return {"birth_date": _by_row(rows, texts)}


def mojibake(name: str, shape: int) -> str:
    """A garbled name as legacy systems produce it; every shape encodes in GB18030."""
    if shape == 0:  # UTF-8 U+FFFD read as GBK
        return "锟斤拷" * max(1, len(name) - 1)
    if shape == 1:  # undecodable bytes replaced
        return "\ufffd" * len(name)
    # cp1252 rather than latin-1: no C1 controls (U+0085 would split lines for some readers)
    once = name.encode("utf-8").decode("cp1252", errors="replace")
    return once if shape == 2 else once.encode("utf-8").decode("cp1252", errors="replace")


def _mojibake_names(pop: Population, rows: Array, rng: Rng) -> Edits:
    names = names_of(pop, rows)
    shapes = rng.integers(0, 4, size=rows.size).tolist()
    return {"name": _by_row(rows, [mojibake(n, s) for n, s in zip(names, shapes, strict=True)])}


def _rare_names(pop: Population, rows_per_char: Array) -> Edits:
    names: dict[int, str] = {}
    for char, rows in zip(RARE_CHARS, rows_per_char, strict=True):
        texts = SURNAMES[pop.surname[rows]] + char + GIVEN_CHARS[pop.given1[rows]]
        names.update(_by_row(rows, texts))
    return {"name": names}


def _report(
    pop: Population, table: CommunityTable, labels: dict[str, dict[str, str]],
    groups: Mapping[str, Array], edits: Edits,
) -> list[dict[str, Any]]:
    rows = np.sort(np.concatenate(list(groups.values())))
    reason = {row: kind for kind, members in groups.items() for row in members.tolist()}
    ids = render_fields(pop, table, rows, labels)["citizen_id"].tolist()
    fixed = edits.get("citizen_id", {})
    return [
        {"line": row + 1, "citizen_id": fixed.get(row, cid), "reason": reason[row]}
        for row, cid in zip(rows.tolist(), ids, strict=True)
    ]


def patch(values: Array, edits: tuple[Array, Array] | None, start: int) -> Array:
    """A chunk's column with the planted text in place; `edits` are (sorted rows, texts)."""
    if edits is None:
        return values
    rows, texts = edits
    lo, hi = np.searchsorted(rows, [start, start + values.size])
    patched = values.copy()
    patched[rows[lo:hi] - start] = texts[lo:hi]
    return patched


def sorted_edits(edits: Edits) -> dict[str, tuple[Array, Array]]:
    """Edits as sorted row arrays with their texts, for `patch`."""
    out: dict[str, tuple[Array, Array]] = {}
    for field, by_row in edits.items():
        rows = np.array(sorted(by_row), dtype=np.int64)
        out[field] = (rows, np.array([by_row[r] for r in rows.tolist()], dtype=object))
    return out
