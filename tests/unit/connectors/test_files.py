"""File-drop connector: each complete file once, in name order, with the cursor of names seen."""

from __future__ import annotations

import hashlib
from pathlib import Path

from connectors.files import FilesConnector


def make_drop(folder: Path, files: dict[str, bytes]) -> Path:
    """A drop folder holding the given files."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def make_connector(folder: Path, pattern: str = "*.csv") -> FilesConnector:
    return FilesConnector(folder, pattern, "csv", "gb18030")


def test_yields_each_file_once_in_name_order(tmp_path: Path) -> None:
    folder = make_drop(tmp_path / "drop", {"b.csv": b"2", "a.csv": b"1", "c.csv": b"3"})
    payloads = list(make_connector(folder).fetch({}))
    assert [p.name for p in payloads] == ["a.csv", "b.csv", "c.csv"]
    assert [p.data for p in payloads] == [b"1", b"2", b"3"]
    assert all(p.media_type == "text/csv" and p.encoding == "gb18030" for p in payloads)


def test_cursor_lists_the_names_taken_so_far(tmp_path: Path) -> None:
    folder = make_drop(tmp_path / "drop", {"b.csv": b"2", "a.csv": b"1"})
    cursors = [p.cursor for p in make_connector(folder).fetch({"files": ["0.csv"]})]
    assert cursors == [{"files": ["0.csv", "a.csv"]}, {"files": ["0.csv", "a.csv", "b.csv"]}]


def test_names_in_state_are_skipped(tmp_path: Path) -> None:
    folder = make_drop(tmp_path / "drop", {"a.csv": b"1", "b.csv": b"2", "c.csv": b"3"})
    payloads = list(make_connector(folder).fetch({"files": ["a.csv", "c.csv"]}))
    assert [p.name for p in payloads] == ["b.csv"]


def test_fetch_from_the_last_cursor_yields_only_new_files(tmp_path: Path) -> None:
    folder = make_drop(tmp_path / "drop", {"a.csv": b"1"})
    connector = make_connector(folder)
    (first,) = connector.fetch({})
    assert list(connector.fetch(first.cursor)) == []
    make_drop(folder, {"b.csv": b"2"})
    (second,) = connector.fetch(first.cursor)
    assert second.name == "b.csv"
    assert second.cursor == {"files": ["a.csv", "b.csv"]}


def test_part_files_and_dotfiles_are_skipped(tmp_path: Path) -> None:
    folder = make_drop(tmp_path / "drop", {"a.csv": b"1", "b.csv.part": b"half", ".c.csv": b"tmp",
                                           ".~lock.a.csv#": b"lock"})
    names = [p.name for p in make_connector(folder, pattern="*").fetch({})]
    assert names == ["a.csv"]


def test_dotfile_matching_the_pattern_is_skipped(tmp_path: Path) -> None:
    folder = make_drop(tmp_path / "drop", {"a.csv": b"1", ".b.csv": b"being written"})
    assert [p.name for p in make_connector(folder).fetch({})] == ["a.csv"]


def test_pattern_filters_names(tmp_path: Path) -> None:
    folder = make_drop(tmp_path / "drop", {"a.csv": b"1", "readme.txt": b"x"})
    assert [p.name for p in make_connector(folder).fetch({})] == ["a.csv"]


def test_subfolder_is_not_taken_as_a_file(tmp_path: Path) -> None:
    # FilesSource's default pattern is '*'; departments keep an archive folder next to drops.
    folder = make_drop(tmp_path / "drop", {"a.csv": b"1"})
    (folder / "archive").mkdir()
    assert [p.name for p in make_connector(folder, pattern="*").fetch({})] == ["a.csv"]


def test_content_hash_is_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    folder = make_drop(tmp_path / "drop", {"a.csv": b"same", "b.csv": b"same", "c.csv": b"other"})
    a, b, c = make_connector(folder).fetch({})
    assert a.content_hash == hashlib.sha256(b"same").hexdigest()
    assert a.content_hash == b.content_hash
    assert c.content_hash != a.content_hash
