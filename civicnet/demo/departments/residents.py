"""Synthetic resident register behind the demo public-security feed, shaped like the 2020 census.

A `Population` keeps one compact numpy array per attribute, so that even the full 17.49 million
residents fit in memory; `render_fields` turns any set of rows into the feed's text values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.citizen_id import CHECK_CHARS, WEIGHTS
from schemas.divisions import Registry, is_virtual_community
from schemas.errors import TerminalError

Array = npt.NDArray[Any]
Rng = np.random.Generator

# Seventh national census (2020-11-01) resident population of each district, from Shenzhen's
# census bulletin (17,560,061 in all). 大鹏新区 is counted apart from 龙岗 although its three streets
# carry 龙岗's codes 440307…, so it is a census area of its own (CENSUS_AREAS); the 深汕 cooperation
# zone's 65,663 live outside Shenzhen's codes and are left out: 17,494,398 residents at scale 1.0.
DISTRICT_POPULATION: dict[str, int] = {
    "440306000000": 4_476_554, "440307000000": 3_979_037, "440309000000": 2_528_872,
    "440305000000": 1_795_826, "440304000000": 1_553_225, "440303000000": 1_143_801,
    "440311000000": 1_095_289, "440310000000": 551_333, "440308000000": 214_225,
}
DAPENG_STREETS = ("440307009000", "440307010000", "440307011000")  # 葵涌, 大鹏, 南澳
DAPENG_POPULATION = 156_236
CENSUS_DAY = np.datetime64("2020-11-01", "D")
MALE_SHARE = 122.43 / 222.43
PERSONS_PER_HOUSEHOLD = 2.25
REGISTERED_SHARE = 0.335  # hukou holders: about a third of Shenzhen's residents
AGE_BAND_SHARES = (0.151, 0.795, 0.054)  # 0-14, 15-59, 60+
# (youngest, oldest) birth date of each age band, counted at the census day
_BAND_YOUNGEST = np.array(["2020-10-31", "2005-11-01", "1960-11-01"], dtype="M8[D]")
_BAND_OLDEST = np.array(["2005-11-02", "1960-11-02", "1920-11-02"], dtype="M8[D]")
STATUS_SHARES = (0.994, 0.004, 0.002)  # active, moved_out, deceased
CHECK_OBJ = np.array(list(CHECK_CHARS), dtype=object)

SURNAMES = np.array(
    [*"王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蔡蒋余于杜叶程"
     "魏苏吕丁任卢姚沈钟姜崔谭陆范汪廖石金韦贾夏付方邹熊白孟秦邱侯江尹薛闫段雷龙黎史陶贺毛郝顾龚"
     "邵万覃武钱戴严莫孔向常汤康易乔赖文", "欧阳", "司徒", "上官"],
    dtype=object,
)
_SURNAME_P = 1.0 / np.arange(1, SURNAMES.size + 1) ** 0.9
_SURNAME_P /= _SURNAME_P.sum()
# the last entry is the empty string: a one-character given name
GIVEN_CHARS = np.array(
    [*dict.fromkeys("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建文辉力鹏飞宇浩然子"
                    "涵梓轩欣怡思雨佳琪雅婷晨阳俊志国海燕春梅凤林斌波宁丹云龙新东晓梦嘉诚博瑞泽一"
                    "鸣家豪锦天乐安心语诗晴墨雪金永胜德荣秋菊小远航振宏颖慧彬"), ""],
    dtype=object,
)
# Rare characters the register must keep intact (the last one is outside the BMP).
RARE_CHARS = ("坣", "壆", "𣵦")
_ROAD_STEMS = (
    "建设人民幸福和平文化新村工业兴华友谊东升南华北环富民华安振兴团结繁荣永安长兴育才"
    "学府创新科技桂花紫荆榕树荔枝金田银河朝阳翠竹松柏怡景沿河环城光明公园青年宝华龙华"
)
_ROAD_KINDS = ("路", "路", "路", "大道", "街", "路", "路", "路", "街", "路") * 4
ROADS = np.array(
    [_ROAD_STEMS[2 * i : 2 * i + 2] + kind for i, kind in enumerate(_ROAD_KINDS)], dtype=object
)
SHENZHEN_AREAS = np.array([440301, 440303, 440304, 440305, 440306, 440307, 440308])
# area codes of the counties most of Shenzhen's non-registered residents come from
OTHER_AREAS = np.array([
    430124, 430381, 430481, 430521, 430524, 431021, 431121, 433122,  # Hunan
    450881, 450921, 450981, 450521, 452501,  # Guangxi
    360721, 360731, 360732, 362101, 360124,  # Jiangxi
    411122, 411521, 410381, 412822, 411303,  # Henan
    441481, 441581, 440582, 445281, 440823, 441424, 445122, 440981,  # Guangdong
    421181, 422801, 510722, 511323, 500230, 350524, 362330,  # Hubei, Sichuan, Chongqing, ...
])


class DemoDataError(TerminalError):
    """The demo generator cannot produce the requested data (for example, a scale too small)."""


@dataclass(frozen=True)
class CommunityTable:
    """The non-virtual communities of a vintage, with their street and district, in code order."""

    codes: Array
    names: Array
    street_codes: Array
    street_names: Array
    district_codes: Array
    district_names: Array


@dataclass(frozen=True)
class Population:
    """One array per attribute, one element per resident, rows sorted by community."""

    comm: Array  # index into CommunityTable
    household: Array  # household number within the community, from 1
    registered: Array
    birth: Array
    male: Array
    id17: Array  # first 17 digits of the citizen ID as an integer
    check: Array  # index into CHECK_CHARS
    surname: Array
    given1: Array
    given2: Array
    phone: Array  # 0 = none given
    road: Array
    number: Array
    building: Array
    room: Array
    moved_in: Array
    status: Array  # 0 active, 1 moved_out, 2 deceased


def community_table(registry: Registry) -> CommunityTable:
    """Index the registry's non-virtual communities (ports and bonded zones house nobody)."""
    comms = [d for d in registry.by_tier("community") if not is_virtual_community(d.code)]
    streets = [registry.get(d.parent_code) for d in comms]
    districts = [registry.get(s.parent_code) for s in streets]

    def column(values: list[str]) -> Array:
        return np.array(values, dtype=object)

    return CommunityTable(
        column([d.code for d in comms]), column([d.name for d in comms]),
        column([s.code for s in streets]), column([s.name for s in streets]),
        column([d.code for d in districts]), column([d.name for d in districts]),
    )


def census_areas(table: CommunityTable) -> list[tuple[Array, int]]:
    """The communities of each census area and its population: every district, with 大鹏's three
    streets taken out of 龙岗 as an area of their own."""
    dapeng = np.isin(table.street_codes, DAPENG_STREETS)
    areas = [(np.flatnonzero((table.district_codes == district) & ~dapeng), population)
             for district, population in DISTRICT_POPULATION.items()]
    return [*areas, (np.flatnonzero(dapeng), DAPENG_POPULATION)]


def allocate_residents(table: CommunityTable, scale: float, rng: Rng) -> Array:
    """Community index of every resident: census totals per area, lognormal within it."""
    counts = np.zeros(table.codes.size, dtype=np.int64)
    for members, population in census_areas(table):
        weights = rng.lognormal(0.0, 0.45, size=members.size)
        total = max(1, round(population * scale))
        counts[members] = rng.multinomial(total, weights / weights.sum())
    return np.repeat(np.arange(counts.size, dtype=np.int16), counts)


def assign_households(comm: Array, rng: Rng) -> tuple[Array, Array]:
    """Household key (0..H-1) and number within the community; households never span two."""
    n = comm.size
    sizes = 1 + rng.poisson(PERSONS_PER_HOUSEHOLD - 1, size=n // 2 + 16)
    while sizes.sum() < n:
        sizes = np.concatenate([sizes, 1 + rng.poisson(PERSONS_PER_HOUSEHOLD - 1, size=n)])
    household = np.repeat(np.arange(sizes.size), sizes)[:n]
    new = np.ones(n, dtype=bool)
    new[1:] = (household[1:] != household[:-1]) | (comm[1:] != comm[:-1])
    key = np.cumsum(new) - 1
    starts = np.flatnonzero(np.r_[True, comm[1:] != comm[:-1]]) if n else np.zeros(0, np.int64)
    first_key = np.repeat(key[starts], np.diff(np.r_[starts, n]))
    return key, (key - first_key + 1).astype(np.int32)


def shuffled_categories(rng: Rng, n: int, shares: tuple[float, ...]) -> Array:
    """Category index per element, in exactly these shares (rounded), in random order."""
    counts = np.round(np.cumsum((0.0, *shares)) * n).astype(np.int64)
    categories: Array = rng.permutation(np.repeat(np.arange(len(shares)), np.diff(counts)))
    return categories


def draw_birth_dates(rng: Rng, n: int) -> Array:
    """Birth dates giving the census age bands; adults peak near thirty, the old thin out."""
    band = shuffled_categories(rng, n, AGE_BAND_SHARES)
    position = rng.random(n)  # 0 = the band's youngest end
    adult, old = band == 1, band == 2
    position[adult] = rng.beta(2.2, 3.5, size=int(adult.sum()))
    position[old] = np.minimum(rng.exponential(0.2, size=int(old.sum())), 0.999)
    span = (_BAND_YOUNGEST - _BAND_OLDEST).astype(np.int64) + 1
    births: Array = _BAND_YOUNGEST[band] - (position * span[band]).astype(np.int64)
    return births


def yyyymmdd(dates: Array) -> Array:
    """Dates as integers like 19900215."""
    months = dates.astype("M8[M]")
    year = months.astype(np.int64) // 12 + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (dates - months.astype("M8[D]")).astype(np.int64) + 1
    result: Array = year * 10_000 + month * 100 + day
    return result


def check_indices(id17: Array) -> Array:
    """Vectorised GB 11643 MOD 11-2: index into CHECK_CHARS for each 17-digit integer."""
    total = np.zeros(id17.shape, dtype=np.int64)
    rest = id17.astype(np.int64)
    for weight in reversed(WEIGHTS):
        total += (rest % 10) * weight
        rest //= 10
    result: Array = (total % 11).astype(np.uint8)
    return result


def unique_id17(area: Array, birth: Array, male: Array, rng: Rng) -> Array:
    """First 17 digits (area, birth date, sequence with odd last digit for men), all distinct."""
    base = area.astype(np.int64) * 10**11 + yyyymmdd(birth) * 1000
    seq = rng.integers(0, 500, size=area.size) * 2 + male
    for _ in range(100):
        key: Array = base + seq
        order = np.argsort(key, kind="stable")
        repeated = order[1:][key[order][1:] == key[order][:-1]]
        if repeated.size == 0:
            return key
        seq[repeated] = rng.integers(0, 500, size=repeated.size) * 2 + male[repeated]
    raise DemoDataError("could not draw distinct citizen ID sequence numbers in 100 rounds")


def draw_address_parts(rng: Rng, n: int) -> tuple[Array, Array, Array, Array]:
    """Road, house number, building and room of n addresses."""
    road = rng.integers(0, ROADS.size, size=n).astype(np.int16)
    number = rng.integers(1, 400, size=n).astype(np.int16)
    building = rng.integers(1, 30, size=n).astype(np.int8)
    room = (rng.integers(1, 33, size=n) * 100 + rng.integers(1, 9, size=n)).astype(np.int16)
    return road, number, building, room


def compose_addresses(
    district: Array, street: Array, parts: tuple[Array, Array, Array, Array]
) -> Array:
    """Addresses like 宝安区新安街道建设路12号3栋1203房 (object array)."""
    road, number, building, room = parts
    addresses: Array = (
        district + street + ROADS[road] + number.astype("U3").astype(object) + "号"
        + building.astype("U2").astype(object) + "栋" + room.astype("U4").astype(object) + "房"
    )
    return addresses


def draw_phones(rng: Rng, n: int, empty_share: float) -> Array:
    """Mobile numbers 1[3-9]xxxxxxxxx as integers; 0 where none was given."""
    phone = 10**10 + rng.integers(3, 10, size=n) * 10**9 + rng.integers(0, 10**9, size=n)
    return np.where(rng.random(n) < empty_share, 0, phone)


def build_population(table: CommunityTable, scale: float, rng: Rng) -> Population:
    """Draw every resident of the demo register; households share origin, address and surname."""
    comm = allocate_residents(table, scale, rng)
    n = comm.size
    key, household = assign_households(comm, rng)
    h = int(key[-1]) + 1 if n else 0
    hh_registered = rng.random(h) < REGISTERED_SHARE
    hh_area = np.where(hh_registered, rng.choice(SHENZHEN_AREAS, h), rng.choice(OTHER_AREAS, h))
    hh_surname = rng.choice(SURNAMES.size, size=h, p=_SURNAME_P)
    road, number, building, room = (part[key] for part in draw_address_parts(rng, h))
    male = shuffled_categories(rng, n, (1 - MALE_SHARE, MALE_SHARE)).astype(bool)
    birth = draw_birth_dates(rng, n)
    own_surname = rng.choice(SURNAMES.size, size=n, p=_SURNAME_P)
    id17 = unique_id17(hh_area[key], birth, male, rng)
    single = GIVEN_CHARS.size - 1  # index of the empty second character
    span = (CENSUS_DAY - birth).astype(np.int64) + 1
    return Population(
        comm=comm, household=household, registered=hh_registered[key], birth=birth, male=male,
        id17=id17, check=check_indices(id17),
        surname=np.where(rng.random(n) < 0.75, hh_surname[key], own_surname).astype(np.int16),
        given1=rng.integers(0, single, size=n).astype(np.int16),
        given2=np.where(rng.random(n) < 0.25, single, rng.integers(0, single, size=n)).astype(
            np.int16
        ),
        phone=draw_phones(rng, n, empty_share=0.003),
        road=road, number=number, building=building, room=room,
        moved_in=birth + (np.sqrt(rng.random(n)) * span).astype(np.int64),
        status=rng.choice(3, size=n, p=STATUS_SHARES).astype(np.uint8),
    )


def zero_padded(values: Array, width: int) -> Array:
    """Non-negative integers below 10**width as zero-padded text (object array)."""
    padded = (values.astype(np.int64) + 10**width).astype(f"U{width + 1}")
    digits = padded.view("U1").reshape(-1, width + 1)[:, 1:]
    return np.ascontiguousarray(digits).view(f"U{width}").ravel().astype(object)


def names_of(pop: Population, rows: Array) -> Array:
    """Surname and given name of the given rows (object array)."""
    names: Array = SURNAMES[pop.surname[rows]] + GIVEN_CHARS[pop.given1[rows]]
    names = names + GIVEN_CHARS[pop.given2[rows]]
    return names


def _labelled(labels: dict[str, str], codes: tuple[str, ...]) -> Array:
    """Source texts for contract codes, indexable by the codes' positions."""
    return np.array([labels[code] for code in codes], dtype=object)


def render_fields(
    pop: Population, table: CommunityTable, rows: Array, labels: dict[str, dict[str, str]]
) -> dict[str, Array]:
    """Text of each contract field for the given rows, in the feed's source vocabulary."""
    comm = pop.comm[rows]
    sex = _labelled(labels["sex"], ("2", "1"))
    residence = _labelled(labels["residence_type"], ("non_registered", "registered"))
    status = _labelled(labels["status"], ("active", "moved_out", "deceased"))
    phone = pop.phone[rows]
    parts = (pop.road[rows], pop.number[rows], pop.building[rows], pop.room[rows])
    return {
        "citizen_id": pop.id17[rows].astype("U17").astype(object) + CHECK_OBJ[pop.check[rows]],
        "name": names_of(pop, rows),
        "sex": sex[pop.male[rows].astype(np.intp)],
        "birth_date": pop.birth[rows].astype("U10").astype(object),
        "residence_type": residence[pop.registered[rows].astype(np.intp)],
        "household_id": "H" + table.codes[comm] + zero_padded(pop.household[rows], 6),
        "address": compose_addresses(table.district_names[comm], table.street_names[comm], parts),
        "phone": np.where(phone == 0, "", phone.astype("U11")).astype(object),
        "division_code": table.codes[comm],
        "moved_in_date": pop.moved_in[rows].astype("U10").astype(object),
        "status": status[pop.status[rows]],
    }

