"""Division codes and the shipped 2020 registry: tiers, parents, subtrees, refusals."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.divisions import (
    TIERS,
    Registry,
    in_subtree,
    is_special_zone_street,
    is_virtual_community,
    load_registry,
    parent_of,
    registry_from_rows,
    subtree_prefix,
    tier_of,
    validate_code,
)
from schemas.errors import InvalidDivisionCodeError, UnknownDivisionError

CITY, FUTIAN, NANYUAN, BINJIANG = "440300000000", "440304000000", "440304001000", "440304001018"
LUOHU_COMMUNITY = "440303001001"
REGISTRY = load_registry(2020)


def make_row(code: str, level: str, parent_code: str, name: str = "测试") -> dict[str, str]:
    """One row of a division reference CSV."""
    return {"code": code, "name": name, "level": level, "parent_code": parent_code, "vintage": "2020"}


def make_rows(**replace: dict[str, str]) -> list[dict[str, str]]:
    """A tiny valid chain city → district → street → community; `replace` swaps rows by level."""
    rows = {
        "city": make_row(CITY, "city", "440000000000", "深圳市"),
        "district": make_row(FUTIAN, "district", CITY, "福田区"),
        "street": make_row(NANYUAN, "street", FUTIAN, "南园街道"),
        "community": make_row(BINJIANG, "community", NANYUAN, "滨江社区"),
    }
    rows.update(replace)
    return list(rows.values())


# --- the shipped registry ----------------------------------------------------------------------

def test_registry_2020_has_the_census_shape() -> None:
    counts = {tier: len(REGISTRY.by_tier(tier)) for tier in TIERS}
    assert counts == {"city": 1, "district": 9, "street": 79, "community": 810}
    assert REGISTRY.vintage == 2020
    assert REGISTRY.root().code == CITY
    assert REGISTRY.root().name == "深圳市"


def test_every_parent_exists_with_the_tier_above() -> None:
    above = dict(zip(TIERS[1:], TIERS[:-1], strict=True))
    for division in REGISTRY.divisions.values():
        if division.tier == "city":
            continue
        parent = REGISTRY.get(division.parent_code)
        assert parent.tier == above[division.tier], division.code
        assert parent_of(division.code) == division.parent_code


def test_walk_yields_every_division_parents_first() -> None:
    seen: set[str] = set()
    for division in REGISTRY.walk():
        assert division.tier == "city" or division.parent_code in seen, division.code
        seen.add(division.code)
    assert seen == set(REGISTRY.divisions)


def test_children_of_a_street_are_its_communities_in_code_order() -> None:
    children = REGISTRY.children(NANYUAN)
    codes = [c.code for c in children]
    assert BINJIANG in codes
    assert codes == sorted(codes)
    assert all(c.tier == "community" and c.parent_code == NANYUAN for c in children)
    assert len(REGISTRY.children(CITY)) == 9


def test_real_community_names() -> None:
    assert REGISTRY.get(BINJIANG).name.startswith("滨江社区")
    assert REGISTRY.get("440306017001").name.startswith("宝民社区")


def test_unknown_code_names_the_vintage() -> None:
    with pytest.raises(UnknownDivisionError, match="does not exist in the 2020 vintage"):
        REGISTRY.get("440304001997")


def test_unshipped_vintage_is_refused() -> None:
    with pytest.raises(UnknownDivisionError, match="no division vintage 1999"):
        load_registry(1999)


# --- code arithmetic on real codes -------------------------------------------------------------

@pytest.mark.parametrize(
    ("code", "tier", "parent", "prefix"),
    [
        (CITY, "city", "440000000000", "4403"),
        (FUTIAN, "district", CITY, "440304"),
        (NANYUAN, "street", FUTIAN, "440304001"),
        (BINJIANG, "community", NANYUAN, BINJIANG),
    ],
    ids=["city", "district", "street", "community"],
)
def test_tier_parent_and_prefix(code: str, tier: str, parent: str, prefix: str) -> None:
    assert tier_of(code) == tier
    assert parent_of(code) == parent
    assert subtree_prefix(code) == prefix


@pytest.mark.parametrize(
    ("code", "root", "inside"),
    [
        (BINJIANG, CITY, True),
        (BINJIANG, FUTIAN, True),
        (BINJIANG, NANYUAN, True),
        (BINJIANG, BINJIANG, True),
        (NANYUAN, BINJIANG, False),
        (FUTIAN, NANYUAN, False),
        (CITY, FUTIAN, False),
        (LUOHU_COMMUNITY, FUTIAN, False),
        (LUOHU_COMMUNITY, NANYUAN, False),
        ("440304002001", NANYUAN, False),
    ],
    ids=["community-in-city", "community-in-district", "community-in-street", "self",
         "street-not-in-community", "district-not-in-street", "city-not-in-district",
         "luohu-not-in-futian", "luohu-not-in-nanyuan", "sibling-street"],
)
def test_in_subtree(code: str, root: str, inside: bool) -> None:
    assert in_subtree(code, root) is inside


@pytest.mark.parametrize(
    "code",
    [440304001018, 440300000000, "44030400101", "4403040010180", "44030400101X", "abcdefghijkl",
     "", None, " 440304001018", "440304001018\n", "４４０３０４００１０１８", "440000000000"],
    ids=["int", "int-city", "11-digits", "13-digits", "letter", "letters", "empty", "none",
         "leading-space", "trailing-newline", "fullwidth-digits", "province"],
)
def test_invalid_codes_are_refused(code: Any) -> None:
    with pytest.raises(InvalidDivisionCodeError):
        tier_of(code)
    with pytest.raises(InvalidDivisionCodeError):
        parent_of(code)


def test_validate_code_returns_a_good_code_and_explains_a_bad_one() -> None:
    assert validate_code(BINJIANG) == BINJIANG
    with pytest.raises(InvalidDivisionCodeError, match="never integers"):
        validate_code(440304001018)


def test_province_is_not_a_tier() -> None:
    with pytest.raises(InvalidDivisionCodeError, match="is a province"):
        tier_of("440000000000")


# --- virtual communities and special zones ------------------------------------------------------

def test_virtual_communities_end_in_498_under_special_zones() -> None:
    virtual = [d for d in REGISTRY.by_tier("community") if is_virtual_community(d.code)]
    assert {d.code for d in virtual} == {"440304400498", "440305400498", "440306400498",
                                         "440308403498", "440310401498"}
    assert all("虚拟社区" in d.name for d in virtual)
    assert all(is_special_zone_street(d.parent_code) for d in virtual)


@pytest.mark.parametrize(
    ("code", "virtual"),
    [("440304400498", True), (BINJIANG, False), ("440304498000", False), ("440304001498", True)],
    ids=["bonded-zone", "ordinary", "street-498", "any-street-498"],
)
def test_is_virtual_community(code: str, virtual: bool) -> None:
    assert is_virtual_community(code) is virtual


@pytest.mark.parametrize(
    ("code", "special"),
    [("440304400000", True), ("440304599000", True), ("440304399000", False),
     ("440304600000", False), (NANYUAN, False), (FUTIAN, False), (CITY, False),
     ("440304400498", True)],
    ids=["400", "599", "399", "600", "ordinary-street", "district", "city", "community-in-zone"],
)
def test_is_special_zone_street(code: str, special: bool) -> None:
    assert is_special_zone_street(code) is special


# --- building a registry from rows ---------------------------------------------------------------

def test_registry_from_valid_rows() -> None:
    registry = registry_from_rows(make_rows(), 2020, source="test.csv")
    assert isinstance(registry, Registry)
    assert set(registry.divisions) == {CITY, FUTIAN, NANYUAN, BINJIANG}
    assert registry.get(BINJIANG).vintage == 2020


@pytest.mark.parametrize(
    ("replace", "line", "fragment"),
    [
        ({"street": make_row(NANYUAN, "community", FUTIAN)}, 4, "level says 'community'"),
        ({"district": make_row(FUTIAN, "street", CITY)}, 3, "level says 'street'"),
        ({"community": make_row(BINJIANG, "community", FUTIAN)}, 5,
         f"parent of {BINJIANG} must be {NANYUAN}, file says {FUTIAN}"),
        ({"street": make_row(NANYUAN, "street", "440303000000")}, 4,
         f"parent of {NANYUAN} must be {FUTIAN}"),
        ({"community": make_row("44030400101", "community", NANYUAN)}, 5, "not 12 digits"),
    ],
    ids=["wrong-level-street", "wrong-level-district", "wrong-parent-community",
         "wrong-parent-street", "malformed-code"],
)
def test_registry_from_rows_refuses_with_the_line_number(replace: dict[str, dict[str, str]],
                                                         line: int, fragment: str) -> None:
    with pytest.raises(InvalidDivisionCodeError) as caught:
        registry_from_rows(make_rows(**replace), 2020, source="test.csv")
    message = str(caught.value)
    assert f"test.csv line {line}:" in message
    assert fragment in message


def test_registry_from_rows_refuses_a_missing_parent() -> None:
    rows = [r for r in make_rows() if r["level"] != "street"]
    with pytest.raises(UnknownDivisionError, match=f"parent {NANYUAN} of {BINJIANG} is missing"):
        registry_from_rows(rows, 2020, source="test.csv")
