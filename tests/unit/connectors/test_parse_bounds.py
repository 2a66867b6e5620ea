"""Bounded parsing: rows, columns, keys and uncompressed size are checked while a payload is read,
and a parse error names the record and column, never a value from the file."""

from __future__ import annotations

import io
import zipfile

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.parse import read_payload
from connectors.parse_encoding import text_encoding
from connectors.parse_limits import ParseLimits, PayloadTooLargeError, TooManyColumnsError, UnreadablePayloadError
from schemas.media import CSV, JSONL, PARQUET, XLSX

SMALL = ParseLimits(rows=5, columns=4, uncompressed_bytes=200_000, zip_members=50)
CITIZEN_ID, NAME = "440304199001011233", "王小明"


def workbook(rows: list[list[object]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def csv_rows(n: int, width: int = 2) -> bytes:
    header = ",".join(f"c{i}" for i in range(width))
    return (header + "\n" + "".join(",".join(str(r) for _ in range(width)) + "\n" for r in range(n))).encode()


# --- rows ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("media_type", "body"), [
    (CSV, csv_rows(6)),
    (CSV, b"a,b\n" + b'"x\ny",1\n' * 6),  # multi-line records: more lines than records, still too many
    (JSONL, b'{"a": 1}\n' * 6),
    (XLSX, workbook([["a", "b"], *[[i, i] for i in range(6)]])),
], ids=["csv", "csv-multiline", "jsonl", "xlsx"])
def test_more_rows_than_the_limit_are_refused_as_too_large(media_type: str, body: bytes) -> None:
    with pytest.raises(PayloadTooLargeError, match="more than 5 rows") as caught:
        read_payload(body, media_type, None, "big", SMALL)
    assert "split" in str(caught.value)


def test_rows_at_the_limit_are_read() -> None:
    assert read_payload(csv_rows(5), CSV, None, "ok.csv", SMALL).num_rows == 5
    assert read_payload(b"a,b\n" + b'"x\ny",1\n' * 5, CSV, None, "ok.csv", SMALL).num_rows == 5
    assert read_payload(b'{"a": 1}\n' * 5, JSONL, None, "ok.jsonl", SMALL).num_rows == 5


def test_an_xlsx_row_far_down_the_sheet_is_refused_without_reading_the_empty_rows_between() -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["a", "b"])
    sheet.cell(row=1_048_576, column=1, value="last")  # a tiny file that claims a million rows
    out = io.BytesIO()
    book.save(out)
    with pytest.raises(PayloadTooLargeError, match="more than 5 rows"):
        read_payload(out.getvalue(), XLSX, None, "tall.xlsx", SMALL)


def test_parquet_rows_are_checked_from_its_footer() -> None:
    sink = io.BytesIO()
    pq.write_table(pa.table({"a": list(range(6))}), sink)
    with pytest.raises(PayloadTooLargeError, match="more than 5 rows"):
        read_payload(sink.getvalue(), PARQUET, None, "t.parquet", SMALL)


# --- columns and keys --------------------------------------------------------------------------------

@pytest.mark.parametrize(("media_type", "body"), [
    (CSV, csv_rows(1, width=5)),
    (JSONL, b'{"a": 1, "b": 2}\n{"c": 3, "d": 4, "e": 5}\n'),
    (XLSX, workbook([["a", "b", "c", "d", "e"], [1, 2, 3, 4, 5]])),
], ids=["csv", "jsonl-distinct-keys", "xlsx"])
def test_more_columns_than_the_limit_are_refused(media_type: str, body: bytes) -> None:
    with pytest.raises(TooManyColumnsError, match="more than 4") as caught:
        read_payload(body, media_type, None, "wide", SMALL)
    assert "split" in str(caught.value) or "remove" in str(caught.value)


def test_an_xlsx_row_reaching_far_right_is_refused_before_it_is_padded() -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["a", "b"])
    sheet.cell(row=2, column=16384, value="x")
    out = io.BytesIO()
    book.save(out)
    with pytest.raises(TooManyColumnsError, match="row 2"):
        read_payload(out.getvalue(), XLSX, None, "wide.xlsx", SMALL)


# --- uncompressed size (zip bombs) -----------------------------------------------------------------------

def test_an_xlsx_whose_members_declare_more_than_the_limit_is_refused_before_it_is_inflated() -> None:
    body = io.BytesIO()
    with zipfile.ZipFile(body, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b" " * 300_000)  # compresses to a few hundred bytes
    assert len(body.getvalue()) < 5_000
    with pytest.raises(PayloadTooLargeError, match="200000 bytes"):
        read_payload(body.getvalue(), XLSX, None, "bomb.xlsx", SMALL)


def test_an_xlsx_with_too_many_members_is_refused() -> None:
    body = io.BytesIO()
    with zipfile.ZipFile(body, "w") as archive:
        for i in range(51):
            archive.writestr(f"m{i}", b"")
    with pytest.raises(PayloadTooLargeError, match="50 members"):
        read_payload(body.getvalue(), XLSX, None, "many.xlsx", SMALL)


def test_an_xlsx_member_that_inflates_past_its_declared_size_is_refused() -> None:
    body = io.BytesIO()
    source = zipfile.ZipFile(io.BytesIO(workbook([["a"], [1]])))  # one workbook: its members are read as listed
    with zipfile.ZipFile(body, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in source.infolist():
            archive.writestr(member, source.read(member))
    raw = bytearray(body.getvalue())
    # the central directory's and local header's uncompressed size of every member: say 10 bytes
    for signature, offset in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):
        start = 0
        while (start := raw.find(signature, start)) >= 0:
            raw[start + offset:start + offset + 4] = (10).to_bytes(4, "little")
            start += 4
    with pytest.raises(UnreadablePayloadError, match="not a readable XLSX"):
        read_payload(bytes(raw), XLSX, None, "liar.xlsx", SMALL)


def test_parquet_declaring_more_uncompressed_bytes_than_the_limit_is_refused() -> None:
    sink = io.BytesIO()
    pq.write_table(pa.table({"a": ["x" * 100_000, "y" * 150_000]}), sink, compression="zstd")
    with pytest.raises(PayloadTooLargeError, match="200000 bytes"):
        read_payload(sink.getvalue(), PARQUET, None, "t.parquet", SMALL)


# --- duplicate keys, cells past the header ----------------------------------------------------------------

def test_a_json_object_repeating_a_key_is_refused_with_line_and_key() -> None:
    body = b'{"id": 1, "name": "a"}\n{"id": 2, "name": "b", "name": "c"}\n'
    with pytest.raises(UnreadablePayloadError, match=r"line 2 .*'name'") as caught:
        read_payload(body, JSONL, None, "dup.jsonl")
    assert '"b"' not in str(caught.value) and "'c'" not in str(caught.value)


def test_an_xlsx_cell_past_the_header_is_refused_naming_row_and_column() -> None:
    body = workbook([["a", "b"], [1, 2], [3, 4, CITIZEN_ID]])
    with pytest.raises(UnreadablePayloadError, match=r"row 3, column C") as caught:
        read_payload(body, XLSX, None, "past.xlsx")
    assert CITIZEN_ID not in str(caught.value)


def test_formatted_but_empty_cells_past_the_header_are_fine() -> None:
    body = workbook([["a", "b"], [1, 2, None, None]])
    assert read_payload(body, XLSX, None, "ok.xlsx").to_pylist() == [{"a": "1", "b": "2", "_line": 1}]


# --- no values in parse errors --------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    f"公民身份号码,姓名\n440304195001020019,张三\n{CITIZEN_ID},{NAME},多余\n".encode(),
    f'公民身份号码,姓名\n440304195001020019,张三\n"{CITIZEN_ID},{NAME}\n'.encode(),
], ids=["extra-field", "unclosed-quote"])
def test_a_malformed_csv_record_is_named_by_number_not_by_its_values(body: bytes) -> None:
    with pytest.raises(UnreadablePayloadError, match="record 2") as caught:
        read_payload(body, CSV, "utf-8", "residents.csv")
    message = str(caught.value)
    assert CITIZEN_ID not in message and NAME not in message
    assert message.startswith("residents.csv: not a readable utf-8 CSV")


def test_a_body_that_is_not_the_declared_encoding_names_the_line_not_the_text() -> None:
    body = "公民身份号码,姓名\n".encode() + f"{CITIZEN_ID},{NAME}\n".encode("gb18030")
    with pytest.raises(UnreadablePayloadError, match="line 2") as caught:
        read_payload(body, CSV, "utf-8", "residents.csv")
    assert CITIZEN_ID not in str(caught.value)


def test_a_headerless_file_does_not_echo_its_first_row() -> None:
    body = f"{CITIZEN_ID},{NAME},{CITIZEN_ID}\n".encode()
    with pytest.raises(UnreadablePayloadError, match="header row is probably missing") as caught:
        read_payload(body, CSV, "utf-8", "residents.csv")
    assert CITIZEN_ID not in str(caught.value) and NAME not in str(caught.value)


def test_an_xlsx_header_that_looks_like_data_is_not_echoed() -> None:
    body = workbook([[CITIZEN_ID, NAME, None, "x"], [1, 2, 3, 4]])
    with pytest.raises(UnreadablePayloadError, match="header row is probably missing") as caught:
        read_payload(body, XLSX, None, "h.xlsx")
    assert CITIZEN_ID not in str(caught.value) and NAME not in str(caught.value)


def test_an_xlsx_header_with_a_gap_names_the_column_by_letter() -> None:
    with pytest.raises(UnreadablePayloadError, match="column C is empty"):
        read_payload(workbook([["编号", "金额", None, "说明"], [1, 2, 3, 4]]), XLSX, None, "h.xlsx")


# --- encodings --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec", ["rot13", "zlib_codec", "base64", "hex", "uu"])
def test_a_codec_that_is_not_a_text_encoding_is_refused(codec: str) -> None:
    with pytest.raises(UnreadablePayloadError, match="not a text encoding"):
        text_encoding(codec)
    with pytest.raises(UnreadablePayloadError, match="not a text encoding"):
        read_payload(b"a\n1\n", CSV, codec, "x.csv")


def test_text_encodings_are_accepted_by_their_canonical_name() -> None:
    assert text_encoding("GBK") == "gbk"
    assert text_encoding("utf8") == "utf-8"
    with pytest.raises(UnreadablePayloadError, match="unknown"):
        text_encoding("klingon")


def test_pulled_files_are_bounded_by_default() -> None:
    """Pulls (file drops, exports) use the same readers with PULL_LIMITS: a feed file cannot exhaust a worker."""
    from connectors.parse_limits import PULL_LIMITS

    assert PULL_LIMITS.rows >= 17_500_000  # the whole city's residents register fits in one drop
    with pytest.raises(TooManyColumnsError, match=f"more than {PULL_LIMITS.columns}"):
        read_payload(csv_rows(1, width=PULL_LIMITS.columns + 1), CSV, None, "drop.csv")
