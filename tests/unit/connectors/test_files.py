"""File-drop connector: each complete file once, in name order; corrected re-drops taken again."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem

from connectors.feeds import FilesSource
from connectors.files import FilesConnector
from connectors.parse import read_payload
from connectors.parse_limits import UnreadablePayloadError
from connectors.payload import Payload
from schemas.errors import TransientError
from schemas.media import CSV, JSONL, PARQUET, XLSX


class Drop:
    """A drop folder reached through fsspec: a local path or a memory:// URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.fs.mkdirs(self.root, exist_ok=True)

    def put(self, name: str, data: bytes) -> None:
        self.fs.makedirs(f"{self.root}/{name}".rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(f"{self.root}/{name}", data)

    def rename(self, old: str, new: str) -> None:
        self.fs.mv(f"{self.root}/{old}", f"{self.root}/{new}")


@pytest.fixture(params=["local", "memory"])
def drop(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Drop]:
    if request.param == "local":
        yield Drop(str(tmp_path / "drop"))
        return
    url = f"memory://drops/{uuid.uuid4().hex}"
    yield Drop(url)
    fsspec.filesystem("memory").rm(url, recursive=True)


@pytest.fixture
def local(tmp_path: Path) -> Drop:
    return Drop(str(tmp_path / "drop"))


def connector(url: str, **overrides: Any) -> FilesConnector:
    config: dict[str, Any] = {"kind": "files", "path": url, "pattern": "*", "settle_seconds": 0, **overrides}
    return FilesConnector(FilesSource.model_validate(config), ("id",))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def csv_bytes(text: str = "id,名称\n1,福田\n", encoding: str = "utf-8") -> bytes:
    return text.encode(encoding)


def parquet_bytes(rows: dict[str, list[str]]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table(rows), sink)
    return sink.getvalue()


def xlsx_bytes(rows: list[list[Any]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    sink = io.BytesIO()
    book.save(sink)
    return sink.getvalue()


def test_yields_each_file_once_in_name_order(drop: Drop) -> None:
    files = {"b.csv": csv_bytes("id\n2\n"), "a.csv": csv_bytes("id\n1\n"), "c.csv": csv_bytes("id\n3\n")}
    for name, data in files.items():
        drop.put(name, data)
    payloads = list(connector(drop.url).fetch({}))
    assert [p.name for p in payloads] == ["a.csv", "b.csv", "c.csv"]
    assert [p.data for p in payloads] == [files["a.csv"], files["b.csv"], files["c.csv"]]
    assert all(p.media_type == CSV for p in payloads)


def test_each_cursor_covers_this_file_and_every_one_before(drop: Drop) -> None:
    drop.put("a.csv", b"id\n1\n")
    drop.put("b.csv", b"id\n2\n")
    cursors = [{"files": p.cursor["files"]} for p in connector(drop.url).fetch({"files": {"0.csv": "f" * 64}})]
    assert cursors == [
        {"files": {"0.csv": "f" * 64, "a.csv": sha(b"id\n1\n")}},
        {"files": {"0.csv": "f" * 64, "a.csv": sha(b"id\n1\n"), "b.csv": sha(b"id\n2\n")}},
    ]


def test_fetch_from_the_last_cursor_yields_only_new_files(drop: Drop) -> None:
    drop.put("a.csv", b"id\n1\n")
    source = connector(drop.url)
    (first,) = source.fetch({})
    assert list(source.fetch(first.cursor)) == []
    drop.put("b.csv", b"id\n2\n")
    (second,) = source.fetch(first.cursor)
    assert second.name == "b.csv"
    assert list(source.fetch(second.cursor)) == []


def test_names_in_an_old_list_state_count_as_taken(drop: Drop) -> None:
    drop.put("a.csv", b"id\n1\n")
    drop.put("b.csv", b"id\n2\n")
    (payload,) = connector(drop.url).fetch({"files": ["a.csv"]})
    assert payload.name == "b.csv"
    assert payload.cursor["files"] == {"a.csv": None, "b.csv": sha(b"id\n2\n")}


def test_a_corrected_redrop_under_the_same_name_is_taken_again(
    drop: Drop, caplog: pytest.LogCaptureFixture
) -> None:
    drop.put("a.csv", b"id\n1\n")
    source = connector(drop.url)
    (first,) = source.fetch({})
    drop.put("a.csv", b"id\n1\n")  # the same content again: nothing new
    assert list(source.fetch(first.cursor)) == []
    drop.put("a.csv", b"id\n1 corrected\n")
    with caplog.at_level(logging.WARNING, logger="connectors.files"):
        (second,) = source.fetch(first.cursor)
    assert second.data == b"id\n1 corrected\n"
    assert second.cursor["files"] == {"a.csv": sha(b"id\n1 corrected\n")}
    assert "a.csv" in caplog.text and "different content" in caplog.text
    assert list(source.fetch(second.cursor)) == []


PARTIAL_NAMES = [".a.csv", "~$a.xlsx", "a.csv.part", "a.csv.tmp", "a.csv.crdownload", "a.csv.filepart"]


@pytest.mark.parametrize("name", PARTIAL_NAMES,
                         ids=["dot", "office-lock", "part", "tmp", "crdownload", "filepart"])
def test_a_file_still_being_written_is_taken_once_renamed(drop: Drop, name: str) -> None:
    drop.put(name, b"id\n1\n")
    source = connector(drop.url)
    assert list(source.fetch({})) == []
    drop.rename(name, "done.csv")
    assert [p.name for p in source.fetch({})] == ["done.csv"]


def test_a_subfolder_is_not_taken_as_a_file(drop: Drop) -> None:
    drop.put("a.csv", b"id\n1\n")
    drop.put("archive/old.csv", b"id\n0\n")
    assert [p.name for p in connector(drop.url).fetch({})] == ["a.csv"]


def test_pattern_filters_names(drop: Drop) -> None:
    drop.put("a.csv", b"id\n1\n")
    drop.put("readme.txt", b"x")
    assert [p.name for p in connector(drop.url, pattern="*.csv").fetch({})] == ["a.csv"]


def test_a_truncated_parquet_is_skipped_and_taken_once_complete(drop: Drop) -> None:
    complete = parquet_bytes({"id": ["1", "2"]})
    drop.put("a.parquet", complete[: len(complete) // 2])
    source = connector(drop.url)
    assert list(source.fetch({})) == []
    drop.put("a.parquet", complete)
    (payload,) = source.fetch({})
    assert payload.media_type == PARQUET
    table = read_payload(payload.data, payload.media_type, payload.encoding, payload.name)
    assert table["id"].to_pylist() == ["1", "2"]


def test_a_truncated_workbook_is_skipped_and_taken_once_complete(drop: Drop) -> None:
    complete = xlsx_bytes([["id", "名称"], [1, "福田"]])
    drop.put("a.xlsx", complete[:-30])
    source = connector(drop.url)
    assert list(source.fetch({})) == []
    drop.put("a.xlsx", complete)
    assert [p.name for p in source.fetch({})] == ["a.xlsx"]


def test_a_settled_file_whose_end_is_missing_is_taken_to_be_refused_not_waited_for(local: Drop) -> None:
    complete = parquet_bytes({"id": ["1", "2"]})
    local.put("a.parquet", complete[: len(complete) // 2])
    local.put("b.csv", b"id\n3\n")
    hours_ago = time.time() - 7200
    for name in ("a.parquet", "b.csv"):
        os.utime(Path(local.root) / name, (hours_ago, hours_ago))
    cut, good = connector(local.url, settle_seconds=60).fetch({})
    assert (cut.name, good.name) == ("a.parquet", "b.csv")
    with pytest.raises(UnreadablePayloadError, match=r"a\.parquet"):
        read_payload(cut.data, cut.media_type, cut.encoding, cut.name)


def test_a_file_younger_than_settle_seconds_waits_for_the_next_pull(local: Drop) -> None:
    local.put("a.csv", b"id\n1\n")
    source = connector(local.url, settle_seconds=3600)
    assert list(source.fetch({})) == []
    hours_ago = time.time() - 7200
    os.utime(Path(local.root) / "a.csv", (hours_ago, hours_ago))
    assert [p.name for p in source.fetch({})] == ["a.csv"]


class UntimedFileSystem(LocalFileSystem):  # type: ignore[misc]
    """A local folder seen through a server that reports no modification times (some FTP/SFTP)."""

    protocol = "untimed"

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        out: dict[str, Any] = super().info(path, **kwargs)
        return {k: v for k, v in out.items() if k not in ("mtime", "created")}

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return str(super()._strip_protocol(str(path).removeprefix("untimed://")))


def test_without_modification_times_a_file_of_steady_size_is_taken(local: Drop) -> None:
    fsspec.register_implementation("untimed", UntimedFileSystem, clobber=True)
    local.put("a.csv", b"id\n1\n")
    assert "mtime" not in UntimedFileSystem().info(f"{local.root}/a.csv")
    (payload,) = connector(f"untimed://{local.root}", settle_seconds=0.01).fetch({})
    assert payload.data == b"id\n1\n"


class GrowingFileSystem(UntimedFileSystem):
    """As above, with a file that grows between two listings (a slow upload)."""

    protocol = "growing"
    listings = 0

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        out = super().info(path, **kwargs)
        GrowingFileSystem.listings += 1
        return {**out, "size": out["size"] + GrowingFileSystem.listings}

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return super()._strip_protocol(str(path).replace("growing://", "untimed://"))


def test_without_modification_times_a_growing_file_waits(local: Drop) -> None:
    fsspec.register_implementation("growing", GrowingFileSystem, clobber=True)
    local.put("a.csv", b"id\n1\n")
    assert list(connector(f"growing://{local.root}", settle_seconds=0.01).fetch({})) == []


GB_TEXT = "社区代码,名称,主任\n440304001001,福田区南园街道南园社区,王𣵦\n440306017001,宝安区沙井街道坣岗社区,欧阳芳\n"
GBK_TEXT = "社区代码,名称,主任\n440304001001,福田区南园街道南园社区,王芳\n440306017001,宝安区沙井街道新桥社区,欧阳静\n"


@pytest.mark.parametrize(("text", "codec", "detected"), [
    (GB_TEXT, "gb18030", "gb18030"),
    (GBK_TEXT, "gbk", "gb18030"),  # GBK is a subset of GB18030
    (GB_TEXT, "utf-8", "utf-8"),
    (GB_TEXT, "utf-8-sig", "utf-8-sig"),
], ids=["gb18030", "gbk", "utf-8", "utf-8-bom"])
def test_csv_encoding_is_detected_and_recorded(drop: Drop, text: str, codec: str, detected: str) -> None:
    data = text.encode(codec)
    assert data != text.encode("utf-8") or codec == "utf-8"  # the bytes really differ between encodings
    drop.put("a.csv", data)
    (payload,) = connector(drop.url).fetch({})
    assert payload.encoding == detected
    table = read_payload(payload.data, payload.media_type, payload.encoding, payload.name)
    assert table.column_names[:3] == ["社区代码", "名称", "主任"]
    expected = [line.split(",")[2] for line in text.splitlines()[1:]]
    assert table["主任"].to_pylist() == expected


def test_a_declared_encoding_is_used_as_given(drop: Drop) -> None:
    drop.put("a.csv", GBK_TEXT.encode("gbk"))
    (payload,) = connector(drop.url, encoding="gbk").fetch({})
    assert payload.encoding == "gbk"


def test_an_undecodable_csv_is_yielded_for_landing_and_reading_it_says_why(drop: Drop) -> None:
    drop.put("bad.csv", b"id\n\xff\xff\xff\n")
    drop.put("good.csv", b"id\n1\n")
    bad, good = connector(drop.url).fetch({})  # one bad file never holds back the ones after it
    assert (bad.name, bad.encoding, good.name) == ("bad.csv", None, "good.csv")
    with pytest.raises(UnreadablePayloadError, match=r"neither UTF-8 nor GB18030"):
        read_payload(bad.data, bad.media_type, bad.encoding, bad.name)


def test_formats_are_chosen_by_extension(drop: Drop) -> None:
    drop.put("a.xlsx", xlsx_bytes([["id", "名称"], [1, "福田"]]))
    drop.put("b.parquet", parquet_bytes({"id": ["2"], "名称": ["罗湖"]}))
    drop.put("c.jsonl", json.dumps({"id": 3, "名称": "南山"}, ensure_ascii=False).encode() + b"\n")
    drop.put("d.ndjson", json.dumps({"id": 4, "名称": "宝安"}, ensure_ascii=False).encode() + b"\n")
    payloads = list(connector(drop.url).fetch({}))
    assert [(p.name, p.media_type, p.encoding) for p in payloads] == [
        ("a.xlsx", XLSX, None), ("b.parquet", PARQUET, None), ("c.jsonl", JSONL, None), ("d.ndjson", JSONL, None)]
    names = [read_payload(p.data, p.media_type, p.encoding, p.name)["名称"].to_pylist() for p in payloads]
    assert names == [["福田"], ["罗湖"], ["南山"], ["宝安"]]


def test_a_declared_format_overrides_the_extension(drop: Drop) -> None:
    drop.put("export.txt", b"id\n1\n")
    (payload,) = connector(drop.url, format="csv").fetch({})
    assert payload.media_type == CSV


def test_an_unknown_extension_names_the_file_and_the_accepted_ones(drop: Drop) -> None:
    drop.put("a.csv", b"id\n1\n")
    drop.put("b.docx", b"PK")
    drop.put("c.csv", b"id\n3\n")
    a, b, c = connector(drop.url).fetch({})  # the files before and after it are taken
    assert (a.name, a.unreadable, c.name, c.unreadable) == ("a.csv", None, "c.csv", None)
    assert b.name == "b.docx" and b.unreadable is not None
    assert re.search(r"'b\.docx'.*\.csv.*\.xlsx", b.unreadable)


def test_content_hash_is_the_sha256_of_the_bytes(drop: Drop) -> None:
    drop.put("a.csv", b"same")
    drop.put("b.csv", b"same")
    a, b = connector(drop.url).fetch({})
    assert a.content_hash == b.content_hash == sha(b"same")


def test_an_unchanged_taken_file_is_not_read_again(drop: Drop, monkeypatch: pytest.MonkeyPatch) -> None:
    drop.put("a.csv", b"id\n1\n")
    source = connector(drop.url)
    (first,) = source.fetch({})
    assert list(first.cursor["stats"]) == ["a.csv"]
    reads: list[str] = []
    monkeypatch.setattr(FilesConnector, "_read", lambda self, fs, path, name: reads.append(name))
    assert list(source.fetch(first.cursor)) == []
    assert reads == []  # same size and modification time: skipped on the listing alone


def test_a_file_the_folder_will_not_give_is_retried_after_the_others_are_taken(
        drop: Drop, monkeypatch: pytest.MonkeyPatch) -> None:
    drop.put("a.csv", b"id\n1\n")
    drop.put("b.csv", b"id\n2\n")
    drop.put("c.csv", b"id\n3\n")
    real = type(drop.fs)._open  # files are read as streams (fs.open), never whole (fs.cat_file)

    def opened(self: Any, path: str, *args: Any, **kwargs: Any) -> Any:
        if path.endswith("b.csv"):
            raise PermissionError(13, "Permission denied")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(type(drop.fs), "_open", opened)
    taken: list[Payload] = []
    with pytest.raises(TransientError, match=r"cannot read b\.csv.*other files of the drop were taken"):
        for payload in connector(drop.url).fetch({}):
            taken.append(payload)
    assert [p.name for p in taken] == ["a.csv", "c.csv"]
    assert "b.csv" not in taken[-1].cursor["files"]  # taken next pull, once readable
