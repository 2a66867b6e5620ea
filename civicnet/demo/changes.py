"""A second residents drop: some residents move to another community, others update details."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from civicnet.demo.departments.residents import (
    Array,
    CommunityTable,
    Rng,
    compose_addresses,
    draw_address_parts,
    draw_phones,
    zero_padded,
)
from schemas.errors import UnknownDivisionError

MOVED_IN = "2021-03-01"
# new households in the destination community are numbered above any of the initial drop's
_NEW_HOUSEHOLD_BASE = 900_001


@dataclass(frozen=True)
class Changes:
    """The changed rows (field → text, in file order) and which of them moved."""

    fields: dict[str, Array]
    moved: Array  # bool per row


def read_residents(path: Path, columns: Sequence[str]) -> pa.Table:
    """A residents drop with every column as text (GB18030 decoded by pyarrow)."""
    return pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(encoding="gb18030", block_size=16 << 20),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in columns}, strings_can_be_null=False
        ),
    )


def pick_changed_rows(rows: int, skip: Array, fraction: float, rng: Rng) -> Array:
    """Sorted row indices of `fraction` of the rows not in `skip` (the planted bad rows)."""
    good = np.setdiff1d(np.arange(rows), skip)
    count = min(good.size, round(fraction * good.size))
    return np.sort(rng.choice(good, size=count, replace=False))


def run_bounds(keys: Array) -> tuple[Array, Array]:
    """For each element of a sorted array: where its run of equal keys starts, and its length."""
    change = np.r_[True, keys[1:] != keys[:-1]]
    starts = np.flatnonzero(change)
    sizes = np.diff(np.r_[starts, keys.size])
    run = np.cumsum(change) - 1
    return starts[run], sizes[run]


def destination_communities(old: Array, table: CommunityTable, rng: Rng) -> Array:
    """A new community per mover: half in the same street where it can, else another district."""
    street_start, street_size = (a[old] for a in run_bounds(table.street_codes))
    district_start, district_size = (a[old] for a in run_bounds(table.district_codes))
    within = (rng.random(old.size) < 0.5) & (street_size > 1)
    # step 1..size-1 places along the street, wrapping, so never back to the old community
    step = 1 + rng.integers(0, np.maximum(street_size - 1, 1))
    same_street = street_start + (old - street_start + step) % street_size
    # draw among the communities outside the old district by skipping over its block
    other = rng.integers(0, table.codes.size - district_size)
    other_district = np.where(other >= district_start, other + district_size, other)
    return np.where(within, same_street, other_district)


def new_household_numbers(community: Array) -> Array:
    """One new household per mover, numbered from 900001 within each destination community."""
    order = np.argsort(community, kind="stable")
    ordered = community[order]
    rank = np.empty(community.size, dtype=np.int64)
    rank[order] = np.arange(community.size) - np.searchsorted(ordered, ordered)
    return _NEW_HOUSEHOLD_BASE + rank


def community_indices(codes: Array, table: CommunityTable) -> Array:
    """Index of each code in the community table; every code must be a non-virtual community."""
    known = table.codes.astype("U12")
    index = np.minimum(np.searchsorted(known, codes.astype("U12")), known.size - 1)
    unknown = known[index] != codes.astype("U12")
    if unknown.any():
        raise UnknownDivisionError(
            f"residents in {int(unknown.sum())} rows live in codes that are not non-virtual 2020 "
            f"communities (first: {codes[unknown][0]!r}); only good rows can change"
        )
    return index


def _fresh_addresses(comm: Array, old: Array, table: CommunityTable, rng: Rng) -> Array:
    """New addresses in the given communities, each different from the old one."""
    parts = draw_address_parts(rng, comm.size)
    first = compose_addresses(table.district_names[comm], table.street_names[comm], parts)
    road, number, building, room = parts
    other_building = (road, number, building % 29 + 1, room)
    second = compose_addresses(table.district_names[comm], table.street_names[comm], other_building)
    return np.where(first == old, second, first)


def draw_changes(
    initial: dict[str, Array], table: CommunityTable, rng: Rng
) -> Changes:
    """Move half of the given rows to another community; give the rest a new address and phone."""
    n = initial["citizen_id"].size
    moved = np.zeros(n, dtype=bool)
    moved[rng.permutation(n)[: (n + 1) // 2]] = True
    old = community_indices(initial["division_code"], table)
    comm = old.copy()
    comm[moved] = destination_communities(old[moved], table, rng)
    fields = {name: values.copy() for name, values in initial.items()}
    fields["address"] = _fresh_addresses(comm, initial["address"], table, rng)
    fields["division_code"] = table.codes[comm]
    new_household = zero_padded(new_household_numbers(comm[moved]), 6)
    fields["household_id"][moved] = "H" + table.codes[comm[moved]] + new_household
    fields["moved_in_date"][moved] = MOVED_IN
    phone = draw_phones(rng, n, empty_share=0.0)
    phone = np.where(phone.astype("U11") == initial["phone"].astype("U11"), phone ^ 1, phone)
    fields["phone"][~moved] = phone[~moved].astype("U11").astype(object)
    return Changes(fields, moved)
