"""Decoding landed payloads: CSV in GB18030 or UTF-8 and Parquet become text columns plus `_line`."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.parse import read_csv, read_payload
from connectors.parse_limits import UnreadablePayloadError
from schemas.contract import LINE_COLUMN

HEADER = ["公民身份号码", "姓名", "社区代码", "户号"]
ROWS = [
    ["440304199001011233", "王𣵦", "440304001018", "000123"],
    ["11010519491231002X", "李四", "440306017001", "0"],
    ["", "坣壆", "440304001018", "007"],
]


def make_csv(rows: list[list[str]] = ROWS, header: list[str] = HEADER, encoding: str = "gb18030",
             newline: str = "\n", bom: bool = False) -> bytes:
    """CSV bytes as a department would drop them."""
    text = newline.join(",".join(r) for r in [header, *rows]) + newline
    return ("\ufeff" if bom else "").encode(encoding) + text.encode(encoding)


def test_gb18030_csv_decodes_to_text_columns_keeping_leading_zeros() -> None:
    data = make_csv()
    assert "𣵦".encode("gb18030") in data  # a real 4-byte GB18030 sequence
    table = read_csv(data, "gb18030", "residents.csv")
    assert table.column_names == [*HEADER, LINE_COLUMN]
    assert all(table.schema.field(c).type == pa.string() for c in HEADER)
    assert table.column("姓名").to_pylist() == ["王𣵦", "李四", "坣壆"]
    assert table.column("户号").to_pylist() == ["000123", "0", "007"]
    assert table.column("公民身份号码").to_pylist() == [ROWS[0][0], ROWS[1][0], None]
    assert table.column(LINE_COLUMN).to_pylist() == [1, 2, 3]
    assert table.schema.field(LINE_COLUMN).type == pa.int64()


@pytest.mark.parametrize("encoding", ["utf-8", "UTF-8", "utf8", "utf_8"],
                         ids=["utf-8", "upper", "no-dash", "underscore"])
def test_utf8_with_bom_loses_the_bom(encoding: str) -> None:
    table = read_csv(make_csv(encoding="utf-8", bom=True), encoding, "residents.csv")
    assert table.column_names[0] == "公民身份号码"
    assert table.column("姓名").to_pylist()[0] == "王𣵦"
    assert table.column("户号").to_pylist() == ["000123", "0", "007"]


def test_crlf_line_endings() -> None:
    table = read_csv(make_csv(newline="\r\n"), "gb18030", "residents.csv")
    assert table.column_names == [*HEADER, LINE_COLUMN]
    assert table.column("户号").to_pylist() == ["000123", "0", "007"]


def test_line_numbers_count_records_not_physical_lines() -> None:
    data = '名,地址\n甲,"南园路\n1号"\n乙,"滨江路, 2号"\n'.encode("gb18030")
    table = read_csv(data, "gb18030", "multi.csv")
    assert table.column("地址").to_pylist() == ["南园路\n1号", "滨江路, 2号"]
    assert table.column(LINE_COLUMN).to_pylist() == [1, 2]


def test_header_only_file_has_no_rows() -> None:
    table = read_csv(make_csv(rows=[]), "gb18030", "empty.csv")
    assert table.num_rows == 0
    assert table.column_names == [*HEADER, LINE_COLUMN]


def test_undecodable_header_is_refused_with_a_fix() -> None:
    with pytest.raises(UnreadablePayloadError) as caught:
        read_csv(make_csv(encoding="gb18030"), "utf-8", "residents.csv")
    message = str(caught.value)
    assert message.startswith("residents.csv: header is not valid utf-8")
    assert "fix 'encoding' in the feed config" in message


def test_undecodable_body_is_refused() -> None:
    data = ",".join(HEADER).encode("utf-8") + b"\n" + ",".join(ROWS[0]).encode("gb18030") + b"\n"
    with pytest.raises(UnreadablePayloadError, match=r"residents\.csv: not a readable utf-8 CSV"):
        read_csv(data, "utf-8", "residents.csv")


def test_repeated_header_names_are_refused() -> None:
    with pytest.raises(UnreadablePayloadError, match="header repeats a column name"):
        read_csv(make_csv(header=["姓名", "姓名", "社区代码", "户号"]), "gb18030", "dup.csv")


def test_ragged_row_is_refused() -> None:
    with pytest.raises(UnreadablePayloadError, match=r"ragged\.csv"):
        read_csv(make_csv(rows=[[*ROWS[0], "extra"]]), "gb18030", "ragged.csv")


def test_parquet_payload_becomes_text_with_line_numbers() -> None:
    sink = io.BytesIO()
    pq.write_table(pa.table({"fac_no": ["F1", "F2"], "area": [120.5, None], "staff": [5, 0]}), sink)
    table = read_payload(sink.getvalue(), "application/vnd.apache.parquet", None, "t.parquet")
    assert table.column_names == ["fac_no", "area", "staff", LINE_COLUMN]
    assert table.column("area").to_pylist() == ["120.5", None]
    assert table.column("staff").to_pylist() == ["5", "0"]
    assert table.column(LINE_COLUMN).to_pylist() == [1, 2]


def test_csv_payload_without_encoding_defaults_to_utf8() -> None:
    table = read_payload(make_csv(encoding="utf-8"), "text/csv", None, "r.csv")
    assert table.column("姓名").to_pylist()[0] == "王𣵦"


def test_unknown_media_type_is_refused() -> None:
    with pytest.raises(UnreadablePayloadError, match="media type 'application/json' has no reader"):
        read_payload(b"[]", "application/json", None, "x.json")


def test_encodings_are_detected_from_the_bytes() -> None:
    from connectors.parse_encoding import detect_encoding

    text = "姓名,住址\n张三,福田区滨江路\n"
    assert detect_encoding(text.encode("utf-8")) == "utf-8"
    assert detect_encoding(b"\xef\xbb\xbf" + text.encode("utf-8")) == "utf-8-sig"
    assert detect_encoding(text.encode("gbk")) == "gb18030"
    assert detect_encoding(text.encode("gb18030")) == "gb18030"


def test_json_lines_become_text_columns_with_line_numbers() -> None:
    from connectors.parse import read_payload
    from schemas.media import JSONL

    data = '{"id": 1, "ok": true, "n": 2.0, "tags": ["a"]}\n\n{"id": 2, "extra": "新", "it\'s/~": ""}\n'.encode()
    table = read_payload(data, JSONL, None, "s.jsonl")
    assert table.to_pylist() == [
        {"id": "1", "ok": "true", "n": "2.0", "tags": '["a"]', "extra": None, "it's/~": None, "_line": 1},
        {"id": "2", "ok": None, "n": None, "tags": None, "extra": "新", "it's/~": None, "_line": 2}]


def test_a_bad_json_line_is_refused_with_its_number() -> None:
    from connectors.parse import read_payload
    from connectors.parse_limits import UnreadablePayloadError
    from schemas.media import JSONL

    with pytest.raises(UnreadablePayloadError, match="line 2"):
        read_payload(b'{"id": 1}\n{"id": \n', JSONL, None, "s.jsonl")


def test_a_workbook_reads_its_first_sheet_as_text() -> None:
    import datetime as dt
    import io

    import openpyxl

    from connectors.parse import read_payload
    from connectors.parse_limits import UnreadablePayloadError
    from schemas.media import XLSX

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["编号", "金额", "日期"])
    sheet.append(["E1", 1200.5, dt.date(2021, 6, 1)])
    sheet.append([None, None, None])  # a formatted empty row
    sheet.append(["E2", 300, None])
    out = io.BytesIO()
    book.save(out)
    table = read_payload(out.getvalue(), XLSX, None, "a.xlsx")
    assert table.to_pylist() == [{"编号": "E1", "金额": "1200.5", "日期": "2021-06-01", "_line": 1},
                                 {"编号": "E2", "金额": "300", "日期": None, "_line": 2}]
    with pytest.raises(UnreadablePayloadError, match="not a readable XLSX"):
        read_payload(b"PK\x03\x04 truncated", XLSX, None, "b.xlsx")
