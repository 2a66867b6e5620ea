"""JSON Lines and workbooks are read as streams: in batches of bounded size, with the same rows, types,
line numbers and refusals as a whole-file read, and a refusal without reading past the fault."""

from __future__ import annotations

import io
import json
from pathlib import Path
from unittest import mock

import openpyxl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import parse_jsonl, parse_xlsx
from connectors.parse import payload_batches, read_payload
from connectors.parse_limits import ParseLimits, PayloadTooLargeError, TooManyColumnsError, UnreadablePayloadError
from schemas.contract import LINE_COLUMN
from schemas.media import JSONL, XLSX

SMALL = ParseLimits(rows=50, columns=6, uncompressed_bytes=1 << 20)
CITIZEN_ID = "440304199001011233"


def records(n: int) -> list[dict[str, object]]:
    """Residents whose keys grow as the file goes on: a key first seen late is a column all the same."""
    out: list[dict[str, object]] = []
    for i in range(n):
        record: dict[str, object] = {"id": f"{i:06d}", "n": i, "empty": "" if i % 3 else None}
        if i >= n - 3:
            record["late"] = f"late {i}"
        out.append(record)
    return out


def jsonl(rows: list[dict[str, object]]) -> bytes:
    """JSON Lines with a blank line and a CRLF line among the records."""
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    lines[5:5] = ["", "   "]
    lines[10] += "\r"
    return ("\n".join(lines) + "\n").encode()


def expected(rows: list[dict[str, object]]) -> pa.Table:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    columns = {k: pa.array([None if r.get(k) in (None, "") else str(r[k]) for r in rows], pa.string()) for k in keys}
    return pa.table({**columns, LINE_COLUMN: pa.array(range(1, len(rows) + 1), pa.int64())})


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse_jsonl, "BLOCK_BYTES", 200)  # a few lines a block


@pytest.mark.parametrize("as_path", [False, True], ids=["bytes", "path"])
def test_json_lines_longer_than_a_block_read_as_the_whole_file_does(small_blocks: None, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     as_path: bool) -> None:
    rows = records(40)
    body = jsonl(rows)
    path = tmp_path / "r.jsonl"
    path.write_bytes(body)
    batches = list(payload_batches(path if as_path else body, JSONL, None, "r.jsonl"))
    assert len(batches) > 5 and max(b.num_rows for b in batches) < 10
    streamed = pa.Table.from_batches(batches)
    assert streamed.equals(expected(rows))
    monkeypatch.setattr(parse_jsonl, "BLOCK_BYTES", 1 << 20)  # the whole file in one block
    assert read_payload(body, JSONL, None, "r.jsonl").equals(streamed)


def test_too_many_rows_are_refused_before_the_rest_of_the_file_is_read(small_blocks: None) -> None:
    # past the limit comes what is not even UTF-8: read, it would be refused as that instead
    body = jsonl(records(60)) + b"\xff\xfe not text\n" * 1000
    with pytest.raises(PayloadTooLargeError, match="more than 50 rows"):
        read_payload(body, JSONL, None, "big.jsonl", SMALL)
    with pytest.raises(UnreadablePayloadError, match="not UTF-8"):  # the tail is refused when it comes first
        read_payload(jsonl(records(10)) + b"\xff\xfe not text\n", JSONL, None, "bad.jsonl", SMALL)


def test_a_key_repeated_after_the_first_block_is_refused_naming_its_line(small_blocks: None) -> None:
    lines = [json.dumps(r) for r in records(40)]
    lines[33] = f'{{"id": "{CITIZEN_ID}", "n": 1, "n": 2}}'
    with pytest.raises(UnreadablePayloadError, match=r"dup\.jsonl: line 34 repeats the key 'n'") as caught:
        read_payload(("\n".join(lines) + "\n").encode(), JSONL, None, "dup.jsonl")
    assert CITIZEN_ID not in str(caught.value)


def test_a_bad_line_after_the_first_block_is_refused_with_its_number(small_blocks: None) -> None:
    lines = [json.dumps(r) for r in records(40)]
    lines[30] = f'["{CITIZEN_ID}"]'
    with pytest.raises(UnreadablePayloadError, match=r"line 31 is not a JSON object") as caught:
        read_payload(("\n".join(lines) + "\n").encode(), JSONL, None, "arr.jsonl")
    assert CITIZEN_ID not in str(caught.value)


def test_too_many_keys_in_an_early_block_are_refused_as_at_least(small_blocks: None) -> None:
    wide = json.dumps({f"k{i}": i for i in range(7)})
    body = (wide + "\n" + "\n".join(json.dumps(r) for r in records(30)) + "\n").encode()
    with pytest.raises(TooManyColumnsError, match=r"have at least \d+ distinct keys, more than 6 columns"):
        read_payload(body, JSONL, None, "wide.jsonl", SMALL)


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**12), st.text(max_size=8),
                    st.lists(st.integers(0, 9), max_size=2))
_OBJECTS = st.dictionaries(st.sampled_from(["id", "名称", "a/b", "t~1", ""]), _VALUES, max_size=4)
_LINES = st.lists(st.one_of(_OBJECTS.map(lambda o: json.dumps(o, ensure_ascii=False)), st.sampled_from(["", " "])),
                  max_size=25)


@settings(max_examples=40, deadline=None)
@given(lines=_LINES, crlf=st.booleans(), final_newline=st.booleans(), block=st.integers(1, 120))
def test_any_json_lines_read_in_blocks_of_any_size_are_the_file_read_whole(
        lines: list[str], crlf: bool, final_newline: bool, block: int) -> None:
    end = "\r\n" if crlf else "\n"
    body = (end.join(lines) + (end if final_newline else "")).encode()
    with mock.patch.object(parse_jsonl, "BLOCK_BYTES", 1 << 20):
        whole = read_payload(body, JSONL, None, "p.jsonl")
    with mock.patch.object(parse_jsonl, "BLOCK_BYTES", block):
        streamed = read_payload(body, JSONL, None, "p.jsonl")
    assert streamed.equals(whole)
    assert whole.num_rows == sum(1 for line in lines if line.strip())


def test_a_blank_line_of_a_crlf_file_is_skipped() -> None:
    # JSON's whitespace is space, tab, CR and LF: a line of it holds no record, in a Windows file too
    body = b'{"id": 1}\r\n\r\n\t\r\n{"id": 2}\r\n'
    assert read_payload(body, JSONL, None, "w.jsonl").to_pylist() == [{"id": "1", "_line": 1}, {"id": "2", "_line": 2}]


def test_a_file_of_only_blank_lines_has_no_columns_but_line(small_blocks: None) -> None:
    batches = list(payload_batches(b"\n  \n" * 100, JSONL, None, "blank.jsonl"))
    assert pa.Table.from_batches(batches).to_pylist() == []
    assert batches[0].schema.names == [LINE_COLUMN]


def workbook(rows: list[list[object]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@pytest.mark.parametrize("as_path", [False, True], ids=["bytes", "path"])
def test_a_sheet_longer_than_a_batch_is_read_in_batches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        as_path: bool) -> None:
    rows: list[list[object]] = [[f"E{i}", i * 1.5, None if i % 4 else "x"] for i in range(23)]
    rows[7] = [None, None, None]  # a formatted empty row is skipped, not numbered
    body = workbook([["编号", "金额", "备注"], *rows])
    path = tmp_path / "a.xlsx"
    path.write_bytes(body)
    whole = read_payload(body, XLSX, None, "a.xlsx")
    monkeypatch.setattr(parse_xlsx, "BATCH_ROWS", 5)
    batches = list(payload_batches(path if as_path else body, XLSX, None, "a.xlsx"))
    assert [b.num_rows for b in batches] == [5, 5, 5, 5, 2]
    assert pa.Table.from_batches(batches).equals(whole)
    assert whole.column(LINE_COLUMN).to_pylist() == list(range(1, 23))
    assert whole.column("金额").to_pylist()[:3] == ["0", "1.5", "3"]
