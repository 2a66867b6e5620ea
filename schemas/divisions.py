"""Division codes (12-digit statistical codes) and the shipped division registry by vintage.

A code is `PP CC DD SSS CCC`: province, city, district, street, community. The level comes
from the trailing zero segments; the parent zeroes the lowest non-zero segment. Codes are
always text, never integers.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Literal, get_args

from schemas.errors import InvalidDivisionCodeError, UnknownDivisionError

Tier = Literal["city", "district", "street", "community"]
TIERS: tuple[Tier, ...] = get_args(Tier)
CODE_PATTERN = r"^\d{12}$"
_CODE_RE = re.compile(CODE_PATTERN, re.ASCII)
# (segment start, segment end) in the 12-digit code, for each tier's own segment
_SEGMENTS: dict[Tier, tuple[int, int]] = {
    "city": (2, 4),
    "district": (4, 6),
    "street": (6, 9),
    "community": (9, 12),
}
_PREFIX_LEN: dict[Tier, int] = {"city": 4, "district": 6, "street": 9, "community": 12}
SHIPPED_VINTAGES = (2020,)


def validate_code(code: object) -> str:
    """Return the code if it is 12 digits of text, else raise InvalidDivisionCodeError."""
    if not isinstance(code, str) or not _CODE_RE.fullmatch(code):
        raise InvalidDivisionCodeError(
            f"division code {code!r} is not 12 digits of text; codes are strings like "
            "'440304001001' (never integers, never shortened)"
        )
    return code


def tier_of(code: str) -> Tier:
    """The tier of a code, read from its zero segments (city 4403000000 → 'city')."""
    validate_code(code)
    if code[4:] == "00000000":
        if code[2:4] == "00":
            raise InvalidDivisionCodeError(f"division code {code!r} is a province, not a tier of the network")
        return "city"
    if code[6:] == "000000":
        return "district"
    if code[9:] == "000":
        return "street"
    return "community"


def parent_of(code: str) -> str:
    """The parent's code: zero the lowest non-zero segment."""
    start, end = _SEGMENTS[tier_of(code)]
    return code[:start] + "0" * (end - start) + code[end:]


def subtree_prefix(code: str) -> str:
    """The code prefix that every division in this code's subtree starts with."""
    return code[: _PREFIX_LEN[tier_of(code)]]


def in_subtree(code: str, root: str) -> bool:
    """True if `code` lies in the subtree of `root` (a division is in its own subtree)."""
    return code.startswith(subtree_prefix(root))


def is_virtual_community(code: str) -> bool:
    """Community segments ending in 498 are virtual communities (ports, bonded zones)."""
    return tier_of(code) == "community" and code.endswith("498")


def is_special_zone_street(code: str) -> bool:
    """Street segments 400-599 are special zones rather than street offices."""
    return tier_of(code) != "city" and tier_of(code) != "district" and 400 <= int(code[6:9]) <= 599


@dataclass(frozen=True)
class Division:
    """One unit of the four-tier hierarchy in one vintage."""

    code: str
    name: str
    tier: Tier
    parent_code: str
    vintage: int


@dataclass(frozen=True)
class Registry:
    """All divisions of one vintage, indexed by code."""

    vintage: int
    divisions: Mapping[str, Division]

    def get(self, code: str) -> Division:
        """The division with this code, or UnknownDivisionError naming the vintage."""
        try:
            return self.divisions[code]
        except KeyError:
            raise UnknownDivisionError(
                f"division code {code!r} does not exist in the {self.vintage} vintage; "
                "check the code against schemas/reference or load the vintage that has it"
            ) from None

    def by_tier(self, tier: Tier) -> list[Division]:
        """Divisions of one tier, in code order."""
        return sorted((d for d in self.divisions.values() if d.tier == tier), key=lambda d: d.code)

    def children(self, code: str) -> list[Division]:
        """Direct children of a division, in code order."""
        return sorted(
            (d for d in self.divisions.values() if d.parent_code == code and d.code != code),
            key=lambda d: d.code,
        )

    def root(self) -> Division:
        """The city: the root node of the network."""
        (city,) = self.by_tier("city")
        return city

    def walk(self) -> Iterator[Division]:
        """Every division, parents before children."""
        for tier in TIERS:
            yield from self.by_tier(tier)


def load_registry(vintage: int = 2020) -> Registry:
    """Load a shipped vintage and check every code, tier and parent link."""
    if vintage not in SHIPPED_VINTAGES:
        raise UnknownDivisionError(
            f"no division vintage {vintage} is shipped (have {list(SHIPPED_VINTAGES)}); "
            "add schemas/reference/shenzhen_divisions_<year>.csv"
        )
    ref = resources.files("schemas") / "reference" / f"shenzhen_divisions_{vintage}.csv"
    rows = list(csv.DictReader(ref.read_text(encoding="utf-8").splitlines()))
    return registry_from_rows(rows, vintage, source=str(ref))


def registry_from_rows(rows: list[dict[str, str]], vintage: int, source: str) -> Registry:
    """Build a registry from CSV rows (code, name, level, parent_code, vintage), validating each."""
    divisions: dict[str, Division] = {}
    for line, row in enumerate(rows, start=2):
        code = row["code"]
        where = f"{source} line {line}"
        try:
            tier = tier_of(code)
        except InvalidDivisionCodeError as err:
            raise InvalidDivisionCodeError(f"{where}: {err}") from None
        if row["level"] != tier:
            raise InvalidDivisionCodeError(
                f"{where}: code {code} has zero segments of a {tier} but level says {row['level']!r}"
            )
        expected_parent = parent_of(code)
        if row["parent_code"] != expected_parent:
            raise InvalidDivisionCodeError(
                f"{where}: parent of {code} must be {expected_parent}, file says {row['parent_code']}"
            )
        divisions[code] = Division(code, row["name"], tier, row["parent_code"], vintage)
    for code, div in divisions.items():
        if div.tier != "city" and div.parent_code not in divisions:
            raise UnknownDivisionError(f"{source}: parent {div.parent_code} of {code} is missing")
    return Registry(vintage, divisions)
