"""The demo feed generator: file formats, census shape, planted bad rows, determinism, changes."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import sqlite3
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from civicnet.demo.data import generate_changes, generate_feeds
from civicnet.demo.departments.residents import DemoDataError
from schemas.citizen_id import is_valid
from schemas.divisions import is_virtual_community, load_registry

CENSUS_DAY = dt.date(2020, 11, 1)
RESIDENTS = Path("public_security/residents/residents_0001_initial.csv")
FACILITIES = Path("civil_affairs/facilities.sqlite")
CENSUS = {  # district code → 2020 census residents (M) under its codes: 440307 holds 龙岗 3.98 and 大鹏 0.16
    "440306": 4.48, "440307": 3.98 + 0.16, "440309": 2.53, "440305": 1.80, "440304": 1.55,
    "440303": 1.14, "440311": 1.10, "440310": 0.55, "440308": 0.21,
}
DAPENG_STREETS = ("440307009", "440307010", "440307011")  # 葵涌, 大鹏, 南澳: 大鹏新区, counted apart
REGISTRY = load_registry(2020)
Home = tuple[Path, dict[str, Any]]  # a generated home and the report generate_feeds returned
KINDS = ("invalid_citizen_id", "unknown_division", "duplicate_key", "invalid_date", "mojibake")
CJK_NAME = re.compile(r"^[\u4e00-\u9fff\U00020000-\U0002a6df]{2,4}$")


def feed_config(name: str) -> dict[str, Any]:
    ref = resources.files("connectors") / "feeds" / f"{name}.yaml"
    return yaml.safe_load(ref.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def contract(name: str) -> dict[str, Any]:
    ref = resources.files("schemas") / "datasets" / f"{name}.yaml"
    return yaml.safe_load(ref.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def read_rows(path: Path) -> list[dict[str, str]]:
    """Data rows of a residents drop, decoded strictly as GB18030."""
    text = path.read_bytes().decode("gb18030")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def parses(text: str) -> bool:
    try:
        dt.datetime.strptime(text, "%Y-%m-%d")  # noqa: DTZ007 - a calendar date, no time
    except ValueError:
        return False
    return True


def row_defects(row: dict[str, str]) -> set[str]:
    """The planted-defect kinds a single row shows (duplicates need the whole file)."""
    found = set()
    if not is_valid(row["公民身份号码"], CENSUS_DAY):
        found.add("invalid_citizen_id")
    code = row["社区代码"]
    if re.fullmatch(r"\d{12}", code) is None or code not in REGISTRY.divisions:
        found.add("unknown_division")
    if not parses(row["出生日期"]):
        found.add("invalid_date")
    if CJK_NAME.match(row["姓名"]) is None or "锟斤拷" in row["姓名"]:
        found.add("mojibake")
    return found


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Home:
    home = tmp_path_factory.mktemp("tiny")
    return home, generate_feeds(home, 0.0005)


@pytest.fixture(scope="module")
def tiny_rows(tiny: Home) -> list[dict[str, str]]:
    return read_rows(tiny[0] / "feeds" / RESIDENTS)


@pytest.fixture(scope="module")
def census_rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    home = tmp_path_factory.mktemp("census")
    generate_feeds(home, 0.002)
    return read_rows(home / "feeds" / RESIDENTS)


def planted_lines(report: dict[str, Any]) -> dict[int, str]:
    return {p["line"]: p["reason"] for p in report["residents"]["planted_rows"]}


def test_residents_file_is_gb18030_and_keeps_rare_characters(tiny: Home) -> None:
    home, report = tiny
    raw = (home / "feeds" / RESIDENTS).read_bytes()
    text = raw.decode("gb18030")
    assert text.encode("gb18030") == raw
    assert "𣵦".encode("gb18030") in raw
    lines = text.splitlines()
    rare_names = [lines[n].split(",")[1] for n in report["residents"]["rare_character_lines"]]
    assert {c for name in rare_names for c in name} >= {"坣", "壆", "𣵦"}


def test_header_is_the_feed_configs_source_columns(tiny: Home) -> None:
    home, _ = tiny
    first = (home / "feeds" / RESIDENTS).read_bytes().split(b"\n", 1)[0].decode("gb18030")
    assert first.split(",") == list(feed_config("public_security_residents")["fields"])


def test_values_use_the_source_vocabularies(tiny_rows: list[dict[str, str]]) -> None:
    values = feed_config("public_security_residents")["values"]
    assert {r["性别"] for r in tiny_rows} == set(values["sex"])
    assert {r["户籍类型"] for r in tiny_rows} == set(values["residence_type"])
    statuses = Counter(r["人员状态"] for r in tiny_rows)
    assert set(statuses) <= set(values["status"]) and statuses["正常"] > 0.98 * len(tiny_rows)
    phones = [r["联系电话"] for r in tiny_rows]
    assert all(p == "" or re.fullmatch(r"1[3-9]\d{9}", p) for p in phones)
    assert all(re.fullmatch(r"H\d{12}\d{6}", r["户号"]) for r in tiny_rows)


def test_good_rows_have_no_defect_and_planted_rows_exactly_theirs(
    tiny: Home, tiny_rows: list[dict[str, str]]
) -> None:
    planted = planted_lines(tiny[1])
    for line, row in enumerate(tiny_rows, start=1):
        reason = planted.get(line)
        expected = set() if reason in (None, "duplicate_key") else {reason}
        assert row_defects(row) == expected, (line, row)


def test_citizen_ids_unique_except_planted_duplicates(
    tiny: Home, tiny_rows: list[dict[str, str]]
) -> None:
    planted = planted_lines(tiny[1])
    first_line: dict[str, int] = {}
    for line, row in enumerate(tiny_rows, start=1):
        cid = row["公民身份号码"]
        if planted.get(line) == "duplicate_key":
            original = tiny_rows[first_line[cid] - 1]
            assert first_line[cid] not in planted
            assert row != original
        else:
            assert cid not in first_line, (line, cid)
            first_line[cid] = line


def test_ids_encode_birth_date_and_sex(tiny_rows: list[dict[str, str]]) -> None:
    good = [r for r in tiny_rows if not row_defects(r)]
    assert all(r["公民身份号码"][6:14] == r["出生日期"].replace("-", "") for r in good)
    assert all((int(r["公民身份号码"][16]) % 2 == 1) == (r["性别"] == "男") for r in good)
    registered = [r["户籍类型"] == "户籍" for r in good]
    shenzhen = [r["公民身份号码"].startswith("4403") for r in good]
    assert registered == shenzhen
    assert 0.25 < sum(registered) / len(good) < 0.42


def test_planted_counts_match_the_report(
    tiny: Home, tiny_rows: list[dict[str, str]]
) -> None:
    report = tiny[1]["residents"]
    per_kind = max(3, round(len(tiny_rows) * 0.0005))
    assert report["rows"] == len(tiny_rows)
    assert report["planted"] == dict.fromkeys(KINDS, per_kind)
    assert Counter(p["reason"] for p in report["planted_rows"]) == report["planted"]
    for planted in report["planted_rows"]:
        assert tiny_rows[planted["line"] - 1]["公民身份号码"] == planted["citizen_id"]


def test_every_district_gets_its_census_share(tiny_rows: list[dict[str, str]]) -> None:
    by_district = Counter(r["社区代码"][:6] for r in tiny_rows)
    total = sum(CENSUS.values())
    assert set(CENSUS) <= set(by_district)
    for district, population in CENSUS.items():
        share = by_district[district] / len(tiny_rows)
        assert share == pytest.approx(population / total, abs=0.002)


def test_dapeng_is_counted_apart_from_longgang(tiny_rows: list[dict[str, str]]) -> None:
    """大鹏's 0.16 M live in streets with 龙岗's codes but are not part of 龙岗's 3.98 M (DESIGN.md)."""
    dapeng = sum(r["社区代码"][:9] in DAPENG_STREETS for r in tiny_rows)
    assert dapeng / len(tiny_rows) == pytest.approx(0.16 / sum(CENSUS.values()), abs=0.002)


def test_scale_one_is_the_census_population_inside_shenzhens_codes() -> None:
    """17,560,061 at the census less the 65,663 of the 深汕 zone, whose codes are not Shenzhen's."""
    from civicnet.demo.departments.residents import DAPENG_POPULATION, DISTRICT_POPULATION

    assert sum(DISTRICT_POPULATION.values()) + DAPENG_POPULATION == 17_494_398


def test_no_resident_lives_in_a_virtual_community(tiny_rows: list[dict[str, str]]) -> None:
    codes = {r["社区代码"] for r in tiny_rows if r["社区代码"] in REGISTRY.divisions}
    assert not any(is_virtual_community(c) for c in codes)
    assert len(codes) > 700  # spread over the district's communities, not piled into a few


def test_sex_ratio_ages_and_households_follow_the_census(census_rows: list[dict[str, str]]) -> None:
    good = [r for r in census_rows if parses(r["出生日期"])]
    sexes = Counter(r["性别"] for r in good)
    assert 100 * sexes["男"] / sexes["女"] == pytest.approx(122.43, abs=1)
    born = [dt.date.fromisoformat(r["出生日期"]) for r in good]
    ages = [CENSUS_DAY.year - b.year - ((b.month, b.day) > (11, 1)) for b in born]
    bands = Counter(0 if a <= 14 else 1 if a <= 59 else 2 for a in ages)
    for band, share in enumerate((0.151, 0.795, 0.054)):
        assert bands[band] / len(good) == pytest.approx(share, abs=0.002)
    assert len(census_rows) / len({r["户号"] for r in census_rows}) == pytest.approx(2.25, abs=0.1)
    moved_in = [(dt.date.fromisoformat(r["迁入日期"]), b) for r, b in zip(good, born, strict=True)]
    assert all(b <= m <= CENSUS_DAY for m, b in moved_in)


def test_same_seed_same_bytes_other_seed_other_bytes(
    tmp_path: Path, tiny: Home
) -> None:
    generate_feeds(tmp_path / "again", 0.0005)
    generate_feeds(tmp_path / "other", 0.0005, seed=7)
    for name in (RESIDENTS, FACILITIES, Path("planted.json")):
        first = (tiny[0] / "feeds" / name).read_bytes()
        assert (tmp_path / "again/feeds" / name).read_bytes() == first
    other = (tmp_path / "other/feeds" / RESIDENTS).read_bytes()
    assert other != (tiny[0] / "feeds" / RESIDENTS).read_bytes()


def test_division_reference_is_a_byte_copy(tiny: Home) -> None:
    copied = (tiny[0] / "feeds/statistics/divisions/shenzhen_divisions_2020.csv").read_bytes()
    shipped = (resources.files("schemas") / "reference/shenzhen_divisions_2020.csv").read_bytes()
    assert copied == shipped


def test_planted_json_is_the_returned_report(tiny: Home) -> None:
    home, report = tiny
    assert json.loads((home / "feeds/planted.json").read_text(encoding="utf-8")) == report
    assert report["scale"] == 0.0005 and report["seed"] == 20050222


def test_too_small_a_scale_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DemoDataError, match="scale"):
        generate_feeds(tmp_path, 0.0)


MINIMUM_AREA = {
    "residents_committee_office": 200, "work_station_office": 200, "party_activity_room": 100,
    "police_office": 50, "mediation_room": 50, "health_service_centre": 400,
    "starlight_elderly_home": 200, "library": 100, "outdoor_sports_square": 1000,
}


@pytest.fixture(scope="module")
def facilities(tiny: Home) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    conn = sqlite3.connect(tiny[0] / "feeds" / FACILITIES)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM community_facility")]
    conn.close()
    return rows, tiny[1]["facilities"]


def facility_defects(row: dict[str, Any]) -> set[str]:
    found = set()
    if row["comm_code"] not in REGISTRY.divisions:
        found.add("unknown_division")
    if not parses(row["open_date"]):
        found.add("invalid_date")
    if not row["area"] > 0:
        found.add("out_of_range")
    return found


def test_every_community_has_six_to_nine_facilities(
    facilities: tuple[list[dict[str, Any]], dict[str, Any]],
) -> None:
    rows, report = facilities
    assert list(rows[0]) == [*feed_config("civil_affairs_facilities")["fields"], "updated_at", "is_deleted"]
    assert {row["is_deleted"] for row in rows} == {0}
    assert report["table"] == "community_facility" and report["rows"] == len(rows)
    communities = {
        d.code for d in REGISTRY.by_tier("community") if not is_virtual_community(d.code)
    }
    per_community = Counter(r["fac_no"][1:13] for r in rows)
    assert set(per_community) == communities
    assert min(per_community.values()) == 6 and max(per_community.values()) == 9
    assert len({r["fac_no"] for r in rows}) == len(rows)
    assert all(re.fullmatch(r"F\d{15}", r["fac_no"]) for r in rows)
    (facility_type,) = [f for f in contract("facilities")["fields"] if f["name"] == "facility_type"]
    assert {r["fac_type"] for r in rows} == set(facility_type["constraints"]["enum"]) - {"other"}


def test_facility_planted_rows_have_exactly_their_defect(
    facilities: tuple[list[dict[str, Any]], dict[str, Any]],
) -> None:
    rows, report = facilities
    planted = {p["fac_no"]: p["reason"] for p in report["planted_rows"]}
    assert report["planted"] == {"unknown_division": 3, "invalid_date": 3, "out_of_range": 3}
    assert Counter(planted.values()) == report["planted"]
    for row in rows:
        expected = {planted[row["fac_no"]]} if row["fac_no"] in planted else set()
        assert facility_defects(row) == expected, row
        if not expected:
            assert row["comm_code"] == row["fac_no"][1:13]


def test_facility_values_straddle_the_statutory_minimum(
    facilities: tuple[list[dict[str, Any]], dict[str, Any]],
) -> None:
    good = [r for r in facilities[0] if not facility_defects(r)]
    below = sum(r["area"] < MINIMUM_AREA[r["fac_type"]] for r in good) / len(good)
    assert 0.15 < below < 0.25
    assert all("1995-01-01" <= r["open_date"] <= "2020-12-31" for r in good)
    offsets = {dt.datetime.fromisoformat(r["updated_at"]).utcoffset() for r in good}
    assert offsets == {dt.timedelta(hours=8)}
    names = {r["comm_code"]: REGISTRY.get(r["comm_code"]).name for r in good}
    assert all(r["fac_name"][:2] == names[r["comm_code"]][:2] for r in good)


@pytest.fixture(scope="module")
def changed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("changes")
    generate_feeds(home, 0.0005)
    summary = generate_changes(home)
    feeds = home / "feeds"
    return {
        "summary": summary,
        "report": json.loads((feeds / "planted.json").read_text(encoding="utf-8")),
        "initial": read_rows(feeds / RESIDENTS),
        "rows": read_rows(feeds / summary["file"]),
    }


def test_changes_report_is_recorded(changed: dict[str, Any]) -> None:
    summary, report = changed["summary"], changed["report"]
    assert report["residents_changes"] == summary
    good = report["residents"]["rows"] - len(report["residents"]["planted_rows"])
    assert summary["rows"] == len(changed["rows"]) == round(0.01 * good)
    assert len(summary["moved"]) + summary["updated"] == summary["rows"]
    assert abs(len(summary["moved"]) - summary["updated"]) <= 1


def move_kind(old: str, new: str) -> str:
    if new[:9] == old[:9]:
        return "street"
    return "district" if new[:6] != old[:6] else "other"


def test_movers_change_community_and_the_rest_keep_theirs(changed: dict[str, Any]) -> None:
    planted = planted_lines(changed["report"])
    before = {r["公民身份号码"]: r for n, r in enumerate(changed["initial"], 1) if n not in planted}
    moved = set(changed["summary"]["moved"])
    kinds = Counter()
    for row in changed["rows"]:
        old = before[row["公民身份号码"]]
        for same in ("姓名", "出生日期", "性别", "户籍类型", "人员状态"):
            assert row[same] == old[same]
        assert row["住址"] != old["住址"]
        if row["公民身份号码"] in moved:
            code = row["社区代码"]
            assert code != old["社区代码"] and code in REGISTRY.divisions
            assert not is_virtual_community(code) and REGISTRY.get(code).tier == "community"
            assert row["迁入日期"] == "2021-03-01" and row["户号"].startswith("H" + code)
            kinds[move_kind(old["社区代码"], code)] += 1
        else:
            assert (row["社区代码"], row["户号"]) == (old["社区代码"], old["户号"])
            assert row["迁入日期"] == old["迁入日期"]
            assert row["联系电话"] != old["联系电话"]
            assert re.fullmatch(r"1[3-9]\d{9}", row["联系电话"])
    assert kinds["street"] > 0 and kinds["district"] > 0 and kinds["other"] == 0
