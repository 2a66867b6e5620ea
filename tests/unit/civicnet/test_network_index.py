"""extracts/network.json names each extract relative to the home, so a moved home still reads."""

from __future__ import annotations

import json
from pathlib import Path

from civicnet import context, pipeline
from civicnet.cli import main
from civicnet.pipeline import status
from warehouse.extract import extract_path

CODES = ("440300000000", "440304000000", "440304001000")


def node_stats(code: str) -> dict[str, object]:
    tier = {"440300000000": "city", "440304000000": "district"}.get(code, "street")
    return {"tier": tier, "code": code, "rows": {"residents": len(code)}, "checksums": {"residents": "x"}}


def write_index(home: Path) -> dict[str, object]:
    """An index of three nodes, each with an extract file in place."""
    for code in CODES:
        extract_path(home, code).parent.mkdir(parents=True, exist_ok=True)
        extract_path(home, code).write_bytes(b"")
    pipeline.write_network_index(home, [[node_stats(CODES[1]), node_stats(CODES[2])]], node_stats(CODES[0]))
    return json.loads((home / "extracts" / "network.json").read_text("utf-8"))  # type: ignore[no-any-return]


def test_the_index_stores_extracts_relative_to_the_home(tmp_path: Path) -> None:
    index = write_index(tmp_path)

    stored = {n["code"]: n["extract"] for n in index["nodes"]}  # type: ignore[index, union-attr]
    assert stored == {code: str(extract_path(Path(), code)) for code in CODES}
    assert str(tmp_path) not in (tmp_path / "extracts" / "network.json").read_text("utf-8")


def test_a_moved_home_resolves_every_extract_in_its_new_place(tmp_path: Path) -> None:
    write_index(tmp_path / "old")
    (tmp_path / "old").rename(tmp_path / "new")
    new = tmp_path / "new"

    read = pipeline.read_network_index(new)

    assert {n.code: n.extract for n in read.nodes} == {c: extract_path(new, c) for c in CODES}
    collected = status.collect(new)
    assert [n.extract for n in collected.nodes] == [extract_path(new, c) for c in CODES]
    assert all(n.extract.is_file() for n in collected.nodes)


def test_an_index_of_older_homes_with_absolute_paths_is_read_in_the_home(tmp_path: Path) -> None:
    """Indexes written before paths were relative name the home they were written in."""
    write_index(tmp_path)
    path = tmp_path / "extracts" / "network.json"
    index = json.loads(path.read_text("utf-8"))
    for n in index["nodes"]:
        n["extract"] = str(Path("/gone/home") / n["extract"])
    path.write_text(json.dumps(index), "utf-8")

    read = pipeline.read_network_index(tmp_path)

    assert [n.extract for n in read.nodes] == [extract_path(tmp_path, c) for c in CODES]


def test_status_of_a_moved_home_lists_extracts_in_the_new_place(tmp_path: Path, capsys: object) -> None:
    context.open_city(tmp_path / "old").close()
    write_index(tmp_path / "old")
    (tmp_path / "old").rename(tmp_path / "new")

    assert main(["status", "--json", "--home", str(tmp_path / "new")]) == 0
    out = json.loads(capsys.readouterr().out)  # type: ignore[attr-defined]
    assert [n["extract"] for n in out["nodes"]] == [str(extract_path(tmp_path / "new", c)) for c in CODES]
