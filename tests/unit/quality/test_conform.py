"""Conform a residents batch: value maps, typing, quarantine with stable reasons, nothing lost."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.feeds import load_feeds
from quality.conform import DELETED, LINE, Conformed, SourceColumnsError, SourceMapping, conform_batch
from schemas.citizen_id import check_char
from schemas.contract import load_contracts
from schemas.divisions import load_registry

AS_OF = dt.date(2021, 6, 30)
CONTRACT = load_contracts()["residents"]
FEED = load_feeds()["public_security_residents"]
MAPPING = SourceMapping(FEED.slug, FEED.fields, FEED.values, FEED.dates, FEED.constants,
                        tuple(FEED.ignore))
REGISTRIES = {2020: load_registry()}
SOURCE_COLUMNS = list(FEED.fields)  # the Chinese column names the department sends
BINJIANG = "440304001018"  # 福田 南园街道 滨江社区
BAOMIN = "440306017001"  # 宝安 新安街道 宝民社区


def make_id(n: int) -> str:
    """A valid citizen ID, different for every n (born 1950-01-01 plus n days)."""
    born = dt.date(1950, 1, 1) + dt.timedelta(days=n)
    first17 = f"440304{born:%Y%m%d}{n % 1000:03d}"
    return first17 + check_char(first17)


def wrong_check(cid: str) -> str:
    """The same ID with another check character."""
    return cid[:17] + ("0" if cid[17] != "0" else "1")


def make_row(n: int = 0, **overrides: str | None) -> dict[str, str | None]:
    """One source record as the department sends it (Chinese columns, Chinese code values)."""
    born = dt.date(1950, 1, 1) + dt.timedelta(days=n)
    row: dict[str, str | None] = {
        "公民身份号码": make_id(n), "姓名": "张三", "性别": "男", "出生日期": born.isoformat(),
        "户籍类型": "户籍", "户号": f"H{n:06d}", "住址": "福田区南园街道滨江路1号",
        "联系电话": "13800000000", "社区代码": BINJIANG, "迁入日期": "2010-05-01", "人员状态": "正常",
    }
    row.update(overrides)
    return row


def make_raw(rows: list[dict[str, Any]], columns: list[str] | None = None) -> pa.Table:
    """An Arrow text table as connectors.parse yields it: the given columns plus `_line` from 1."""
    columns = SOURCE_COLUMNS if columns is None else columns
    data = {c: pa.array([r.get(c) for r in rows], pa.string()) for c in columns}
    data[LINE] = pa.array(range(1, len(rows) + 1), pa.int64())
    return pa.table(data)


def conform(rows: list[dict[str, Any]], mapping: SourceMapping = MAPPING,
            columns: list[str] | None = None) -> Conformed:
    return conform_batch(make_raw(rows, columns), CONTRACT, mapping, REGISTRIES, AS_OF)


def lines(table: pa.Table) -> list[int]:
    return table.column(LINE).to_pylist()


def reasons_of(result: Conformed, line: int) -> set[tuple[str, str]]:
    (row,) = [r for r in result.quarantined.to_pylist() if r[LINE] == line]
    return {(r["code"], r["field"]) for r in row["reasons"]}


# --- a clean batch -------------------------------------------------------------------------------

def test_clean_batch_is_accepted_typed_and_mapped() -> None:
    result = conform([make_row(1), make_row(2, 性别="女", 户籍类型="非户籍", 人员状态="迁出",
                                            社区代码=BAOMIN)])
    assert result.received == 2
    assert result.quarantined.num_rows == 0
    assert result.duplicates == 0
    assert result.accepted.column_names == [*CONTRACT.field_names, DELETED, LINE]
    first, second = result.accepted.to_pylist()
    assert first["citizen_id"] == make_id(1)
    assert first["birth_date"] == dt.date(1950, 1, 2)
    assert first["moved_in_date"] == dt.date(2010, 5, 1)
    assert first["vintage"] == 2020
    assert first["division_code"] == BINJIANG
    assert (first["sex"], first["residence_type"], first["status"]) == ("1", "registered", "active")
    assert (second["sex"], second["residence_type"], second["status"]) == ("2", "non_registered",
                                                                           "moved_out")
    assert second["division_code"] == BAOMIN


@pytest.mark.parametrize(
    ("column", "sent", "field", "stored"),
    [
        ("性别", "男", "sex", "1"), ("性别", "女", "sex", "2"), ("性别", "1", "sex", "1"),
        ("户籍类型", "户籍", "residence_type", "registered"),
        ("户籍类型", "非户籍", "residence_type", "non_registered"),
        ("人员状态", "正常", "status", "active"), ("人员状态", "死亡", "status", "deceased"),
        ("性别", " 男 ", "sex", "1"),
    ],
    ids=["male", "female", "already-coded", "registered", "non-registered", "active", "deceased",
         "trimmed-before-mapping"],
)
def test_value_maps(column: str, sent: str, field: str, stored: str) -> None:
    result = conform([make_row(1, **{column: sent})])
    assert result.accepted.column(field).to_pylist() == [stored]


@pytest.mark.parametrize(
    ("column", "sent", "field", "stored"),
    [
        ("姓名", "Zoe\u0308", "name", "Zo\u00eb"),
        ("住址", "\uf90a山路1号", "address", "\u91d1山路1号"),
        ("姓名", "  李四  ", "name", "李四"),
        ("姓名", "李四\t", "name", "李四"),
        ("姓名", "\u3000李四\u3000", "name", "李四"),
    ],
    ids=["combining-diaeresis", "cjk-compatibility-ideograph", "trimmed-spaces", "trimmed-tab",
         "trimmed-ideographic-space"],
)
def test_text_is_nfc_normalised_and_trimmed(column: str, sent: str, field: str, stored: str) -> None:
    result = conform([make_row(1, **{column: sent})])
    assert result.accepted.column(field).to_pylist() == [stored]


def test_four_byte_character_is_accepted_and_round_trips() -> None:
    result = conform([make_row(1, 姓名="王𣵦", 住址="坣壆村𣵦巷3号")])
    assert result.quarantined.num_rows == 0
    (row,) = result.accepted.to_pylist()
    assert row["name"] == "王𣵦"
    assert row["address"] == "坣壆村𣵦巷3号"
    assert row["name"].encode("utf-8")[-4:] == "𣵦".encode()


def test_empty_optional_field_becomes_null() -> None:
    result = conform([make_row(1, 联系电话="", 迁入日期=None)])
    (row,) = result.accepted.to_pylist()
    assert row["phone"] is None
    assert row["moved_in_date"] is None


# --- each bad row kind -----------------------------------------------------------------------------

BAD_ROWS: dict[str, tuple[dict[str, str | None], str, str]] = {
    "invalid_citizen_id-check-char": ({"公民身份号码": wrong_check(make_id(2))}, "invalid_citizen_id",
                                      "citizen_id"),
    "invalid_citizen_id-future-birth": ({"公民身份号码": "44030420300101123"
                                         + check_char("44030420300101123")},
                                        "invalid_citizen_id", "citizen_id"),
    "invalid_citizen_id-letter": ({"公民身份号码": "4403041990O1011233"}, "invalid_citizen_id",
                                  "citizen_id"),
    "invalid_citizen_id-text": ({"公民身份号码": "不详"}, "invalid_citizen_id", "citizen_id"),
    "unknown_division": ({"社区代码": "440304001997"}, "unknown_division", "division_code"),
    "wrong_tier-street": ({"社区代码": "440304001000"}, "wrong_tier", "division_code"),
    "wrong_tier-district": ({"社区代码": "440304000000"}, "wrong_tier", "division_code"),
    "invalid_date-feb-30": ({"出生日期": "1990-02-30"}, "invalid_date", "birth_date"),
    "invalid_date-unknown": ({"出生日期": "不详"}, "invalid_date", "birth_date"),
    "invalid_date-moved-in": ({"迁入日期": "2010/13/01"}, "invalid_date", "moved_in_date"),
    "mojibake-kunjinkao": ({"姓名": "锟斤拷"}, "mojibake", "name"),
    "mojibake-replacement-char": ({"姓名": "\ufffd三"}, "mojibake", "name"),
    "mojibake-latin1": ({"姓名": "å¼ ä¸‰"}, "mojibake", "name"),
    "mojibake-address": ({"住址": "烫烫烫烫"}, "mojibake", "address"),
    "required_missing-empty": ({"姓名": ""}, "required_missing", "name"),
    "required_missing-null": ({"户号": None}, "required_missing", "household_id"),
    "required_missing-blank": ({"社区代码": "   "}, "required_missing", "division_code"),
    "not_in_code_list-sex": ({"性别": "未知"}, "not_in_code_list", "sex"),
    "not_in_code_list-status": ({"人员状态": "失踪"}, "not_in_code_list", "status"),
    "pattern_mismatch-phone": ({"联系电话": "12345"}, "pattern_mismatch", "phone"),
    "pattern_mismatch-division": ({"社区代码": "4403040010"}, "pattern_mismatch", "division_code"),
    "invalid_length-name": ({"姓名": "张" * 51}, "invalid_length", "name"),
    "invalid_length-address": ({"住址": "滨江路" * 67}, "invalid_length", "address"),
    "invalid_length-household": ({"户号": "H" * 51}, "invalid_length", "household_id"),
    "control_character-nul-in-name": ({"姓名": "张\x00三"}, "control_character", "name"),
    "control_character-nul-ascii": ({"户号": "H1\x00"}, "control_character", "household_id"),
    "control_character-form-feed": ({"住址": "滨江路\x0c1号"}, "control_character", "address"),
    "moved_in_date_in_future-9999": ({"迁入日期": "9999-12-31"}, "moved_in_date_in_future", "moved_in_date"),
    "moved_in_date_in_future-tomorrow": ({"迁入日期": "2021-07-01"}, "moved_in_date_in_future", "moved_in_date"),
}


@pytest.mark.parametrize(("overrides", "code", "field"), list(BAD_ROWS.values()), ids=list(BAD_ROWS))
def test_bad_row_is_quarantined_with_its_reason(overrides: dict[str, str | None], code: str,
                                                field: str) -> None:
    result = conform([make_row(1), make_row(2, **overrides), make_row(3)])
    assert lines(result.quarantined) == [2]
    assert reasons_of(result, 2) == {(code, field)}
    assert lines(result.accepted) == [1, 3]
    assert result.duplicates == 0


def test_a_row_with_several_faults_carries_every_reason() -> None:
    result = conform([make_row(1, 性别="未知", 联系电话="12345", 社区代码="440304001997")])
    assert reasons_of(result, 1) == {("not_in_code_list", "sex"), ("pattern_mismatch", "phone"),
                                     ("unknown_division", "division_code")}


def test_key_conflict_quarantines_the_later_row_and_accepts_the_earlier() -> None:
    result = conform([make_row(1), make_row(2), make_row(1, 姓名="张三丰")])
    assert lines(result.accepted) == [1, 2]
    assert result.accepted.column("name").to_pylist() == ["张三", "张三"]
    assert lines(result.quarantined) == [3]
    assert reasons_of(result, 3) == {("duplicate_key", "citizen_id")}
    assert result.duplicates == 0


def test_exact_duplicate_is_counted_not_quarantined() -> None:
    result = conform([make_row(1), make_row(2), make_row(1)])
    assert lines(result.accepted) == [1, 2]
    assert result.quarantined.num_rows == 0
    assert result.duplicates == 1


def test_duplicate_after_normalisation_is_an_exact_duplicate() -> None:
    result = conform([make_row(1, 性别="男"), make_row(1, 性别=" 1 ")])
    assert lines(result.accepted) == [1]
    assert result.duplicates == 1


def test_a_bad_first_row_does_not_make_a_good_later_one_a_conflict() -> None:
    result = conform([make_row(1, 性别="未知"), make_row(1)])
    assert lines(result.quarantined) == [1]
    assert lines(result.accepted) == [2]


# --- the quarantine row ----------------------------------------------------------------------------

def test_quarantine_keeps_raw_values_as_json_and_a_message_with_the_title() -> None:
    bad = make_row(7, 出生日期="1990-02-30", 姓名="王𣵦")
    result = conform([bad])
    (row,) = result.quarantined.to_pylist()
    assert json.loads(row["raw"]) == bad
    (reason,) = row["reasons"]
    assert reason["code"] == "invalid_date"
    assert "出生日期" in reason["message"]
    assert "birth_date" in reason["message"]
    assert "'1990-02-30'" in reason["message"]


def test_duplicate_key_message_names_the_key_title_and_value() -> None:
    result = conform([make_row(1), make_row(1, 姓名="李四")])
    (row,) = result.quarantined.to_pylist()
    (reason,) = row["reasons"]
    assert "公民身份号码" in reason["message"]
    assert make_id(1) in reason["message"]


# --- columns ---------------------------------------------------------------------------------------

def test_missing_mapped_column_is_refused_naming_feed_and_column() -> None:
    columns = [c for c in SOURCE_COLUMNS if c != "联系电话"]
    with pytest.raises(SourceColumnsError) as caught:
        conform([make_row(1)], columns=columns)
    message = str(caught.value)
    assert "'public_security_residents'" in message
    assert "missing ['联系电话']" in message


def test_unmapped_column_is_refused_naming_feed_and_column() -> None:
    rows = [make_row(1) | {"备注": "无"}]
    with pytest.raises(SourceColumnsError) as caught:
        conform(rows, columns=[*SOURCE_COLUMNS, "备注"])
    message = str(caught.value)
    assert "'public_security_residents'" in message
    assert "unmapped ['备注']" in message


def test_ignored_column_is_allowed_and_not_carried() -> None:
    mapping = dataclasses.replace(MAPPING, ignore=("备注",))
    result = conform([make_row(1) | {"备注": "无"}], mapping=mapping, columns=[*SOURCE_COLUMNS, "备注"])
    assert lines(result.accepted) == [1]
    assert "备注" not in result.accepted.column_names


def test_contract_field_nobody_maps_is_refused() -> None:
    mapping = dataclasses.replace(MAPPING, constants={})
    with pytest.raises(SourceColumnsError, match=r"maps nothing to contract fields \['vintage'\]"):
        conform([make_row(1)], mapping=mapping)


# --- nothing lost ----------------------------------------------------------------------------------

# The non-digit citizen IDs are left out here: they are covered case by case above, and this
# property is about conservation.
BAD_KINDS = [k for k in BAD_ROWS if k not in ("invalid_citizen_id-letter", "invalid_citizen_id-text")]


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[dict[str, Any]], set[int], set[int]]:
    """Rows of random kinds, with the lines that must be quarantined and that must be accepted."""
    rows: list[dict[str, Any]] = []
    bad: set[int] = set()
    fresh: set[int] = set()
    for line in range(1, draw(st.integers(1, 12)) + 1):
        kind = draw(st.sampled_from(["good", "bad", "repeat", "conflict"]))
        if kind in ("repeat", "conflict") and rows:
            earlier = draw(st.sampled_from(rows))
            rows.append(dict(earlier) if kind == "repeat" else earlier | {"户号": f"X{line}"})
            continue
        n = 1000 + line
        if kind == "bad":
            rows.append(make_row(n, **BAD_ROWS[draw(st.sampled_from(BAD_KINDS))][0]))
            bad.add(line)
        else:
            rows.append(make_row(n))
            fresh.add(line)
    return rows, bad, fresh


@settings(max_examples=25, deadline=None)
@given(batch=batches())
def test_received_equals_accepted_plus_quarantined_plus_duplicates(
        batch: tuple[list[dict[str, Any]], set[int], set[int]]) -> None:
    rows, bad, fresh = batch
    result = conform(rows)
    accepted, quarantined = set(lines(result.accepted)), set(lines(result.quarantined))
    assert result.received == len(rows)
    assert result.received == result.accepted.num_rows + result.quarantined.num_rows + result.duplicates
    assert not accepted & quarantined
    assert len(rows) - len(accepted | quarantined) == result.duplicates
    assert bad <= quarantined
    assert fresh <= accepted


# --- soft deletes and a community's jurisdiction ------------------------------------------------

def test_a_soft_delete_marker_makes_a_tombstone_row_and_false_words_do_not() -> None:
    mapping = dataclasses.replace(MAPPING, deleted="删除标志")
    values = ["1", "true", "2021-06-20T10:00:00+08:00", "0", "false", "", None, "否", "N"]
    rows = [make_row(n, 删除标志=v) for n, v in enumerate(values)]
    result = conform_batch(make_raw(rows, [*SOURCE_COLUMNS, "删除标志"]), CONTRACT, mapping, REGISTRIES, AS_OF)
    assert result.accepted.column(DELETED).to_pylist() == [True, True, True] + [False] * 6


def test_the_soft_delete_column_is_required_once_the_feed_declares_it() -> None:
    mapping = dataclasses.replace(MAPPING, deleted="删除标志")
    with pytest.raises(SourceColumnsError, match="删除标志"):
        conform([make_row(1)], mapping=mapping)


def test_a_delete_and_an_upsert_of_one_key_in_one_batch_is_a_key_conflict() -> None:
    mapping = dataclasses.replace(MAPPING, deleted="删除标志")
    rows = [make_row(1, 删除标志="0"), make_row(1, 删除标志="1")]
    result = conform_batch(make_raw(rows, [*SOURCE_COLUMNS, "删除标志"]), CONTRACT, mapping, REGISTRIES, AS_OF)
    assert lines(result.accepted) == [1]
    assert reasons_of(result, 2) == {("duplicate_key", "citizen_id")}


def test_rows_outside_a_pushing_community_are_quarantined_as_outside_jurisdiction() -> None:
    rows = [make_row(1), make_row(2, 社区代码=BAOMIN)]
    result = conform_batch(make_raw(rows), CONTRACT, MAPPING, REGISTRIES, AS_OF, scope=BINJIANG)
    assert lines(result.accepted) == [1]
    assert reasons_of(result, 2) == {("outside_jurisdiction", "division_code")}
    (row,) = result.quarantined.to_pylist()
    assert BAOMIN in row["reasons"][0]["message"] and "own community" in row["reasons"][0]["message"]


def test_a_value_cut_short_by_a_nul_is_never_accepted() -> None:
    result = conform([make_row(1, 姓名="张\x00三丰")])
    assert result.accepted.num_rows == 0
    (row,) = result.quarantined.to_pylist()
    (reason,) = row["reasons"]
    assert "\x00" not in reason["message"] and "control character" in reason["message"]
    assert json.loads(row["raw"])["姓名"] == "张\x00三丰"  # the raw value is kept whole for the report


@pytest.mark.parametrize("text", ["多行\n地址", "制表\t符", "回车\r\n换行"], ids=["lf", "tab", "crlf"])
def test_line_breaks_and_tabs_are_not_control_characters(text: str) -> None:
    result = conform([make_row(1, 住址=text)])
    assert result.quarantined.num_rows == 0


def test_a_file_without_its_header_row_does_not_echo_its_first_record() -> None:
    first = make_row(1)
    columns = [str(v) for v in first.values()]  # the first record where the header should be
    with pytest.raises(SourceColumnsError) as caught:
        conform([first], columns=columns)
    message = str(caught.value)
    assert make_id(1) not in message and "13800000000" not in message and "张三" not in message
    assert "header row is probably missing" in message


def test_a_pushing_communitys_accepted_rows_carry_their_values_as_sent() -> None:
    """The merge may still quarantine such a row (its key is another community's record): it needs the
    row's line and raw values, as conform keeps them for the rows it quarantines itself."""
    rows = [make_row(1), make_row(2)]
    result = conform_batch(make_raw(rows), CONTRACT, MAPPING, REGISTRIES, AS_OF, scope=BINJIANG)
    assert result.accepted.column_names == [*CONTRACT.field_names, DELETED, LINE, "_raw"]
    assert [json.loads(raw) for raw in result.accepted.column("_raw").to_pylist()] == \
        [{c: r.get(c) for c in MAPPING.source_columns} for r in rows]
    assert "_raw" not in conform(rows).accepted.column_names  # a batch not confined carries no copy


# --- names and paths with quotes (schemas/sql.py quotes them) -------------------------------------

def test_a_source_column_with_quotes_in_its_name_is_read_as_that_column() -> None:
    odd = '住址 "旧" \'A\''
    fields = {(odd if c == "住址" else c): f for c, f in MAPPING.fields.items()}
    mapping = dataclasses.replace(MAPPING, fields=fields)
    rows = [{(odd if c == "住址" else c): v for c, v in make_row(1).items()}]
    result = conform(rows, mapping=mapping, columns=list(fields))
    assert result.accepted.column("address").to_pylist() == ["福田区南园街道滨江路1号"]


def test_a_batch_file_in_a_folder_with_quotes_conforms(tmp_path: Path) -> None:
    folder = tmp_path / "o'neil \"home\""
    folder.mkdir()
    pq.write_table(make_raw([make_row(1), make_row(2)]), folder / "raw.parquet")
    result = conform_batch(folder / "raw.parquet", CONTRACT, MAPPING, REGISTRIES, AS_OF)
    assert lines(result.accepted) == [1, 2]
