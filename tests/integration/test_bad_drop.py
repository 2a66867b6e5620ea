"""Issue 9 item 8: one unreadable file in a drop folder is refused alone; the rest of the drop lands.

A real drop folder of the statistics bureau's division feed holds, in name order, an empty file, a
file cut off mid-row, and the good division file after them. The pull lands all three, the two
unreadable ones as batches whose check fails with the read error; the merge refuses those two (the
ledger records them, the bureau's outbox gets a report on each) and applies the good one.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from conftest import AS_OF

from civicnet import context, pipeline
from schemas.errors import TerminalError
from warehouse import landing

FEED = "statistics_divisions"
REFERENCE = Path(str(resources.files("schemas") / "reference" / "shenzhen_divisions_2020.csv"))
DROP = Path("feeds/statistics/divisions")
UNREADABLE = ("a_empty.csv", "b_truncated.csv")
GOOD = "c_divisions.csv"


def _fill_drop(home: Path) -> None:
    folder = home / DROP
    folder.mkdir(parents=True)
    good = REFERENCE.read_bytes()
    (folder / "a_empty.csv").write_bytes(b"")
    cut = good[: len(good) // 2]
    (folder / "b_truncated.csv").write_bytes(cut[: cut.rindex(b",") + 1])  # ends inside a row
    (folder / GOOD).write_bytes(good)


@pytest.fixture(scope="module")
def pulled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The drop pulled, each batch checked, then merged, as the ingest DAG does."""
    home = tmp_path_factory.mktemp("bad_drop")
    _fill_drop(home)
    batch_ids = pipeline.pull(home, FEED)
    names = {b: landing.read_manifest(home, "divisions", b).source_name for b in batch_ids}
    errors = {}
    for batch_id in batch_ids:
        try:
            pipeline.check(home, FEED, batch_id, AS_OF)
        except TerminalError as err:
            errors[names[batch_id]] = str(err)
    outcomes = pipeline.merge(home, FEED, batch_ids)
    return {"home": home, "names": names, "errors": errors,
            "outcomes": {names[o["batch_id"]]: o for o in outcomes}}


def test_every_file_of_the_drop_lands_the_unreadable_ones_too(pulled: dict[str, Any]) -> None:
    assert sorted(pulled["names"].values()) == [*UNREADABLE, GOOD]


def test_only_the_unreadable_files_fail_their_check_each_naming_its_file(pulled: dict[str, Any]) -> None:
    assert sorted(pulled["errors"]) == list(UNREADABLE)
    for name, error in pulled["errors"].items():
        assert name in error and "unreadable" in error


def test_the_good_file_is_applied_and_the_unreadable_ones_refused(pulled: dict[str, Any]) -> None:
    decided = {name: o["status"] for name, o in pulled["outcomes"].items()}
    assert decided == {"a_empty.csv": "refused", "b_truncated.csv": "refused", GOOD: "applied"}
    con = context.open_city(pulled["home"], read_only=True)
    try:
        row = con.execute("SELECT count(*) FROM city.divisions").fetchone()
    finally:
        con.close()
    assert row is not None and row[0] == len(REFERENCE.read_text("utf-8").splitlines()) - 1


@pytest.mark.parametrize("name", UNREADABLE)
def test_the_department_gets_a_report_on_each_unreadable_file(pulled: dict[str, Any], name: str) -> None:
    (batch_id,) = [b for b, n in pulled["names"].items() if n == name]
    report_path = pulled["home"] / "outbox" / "statistics" / "divisions" / f"{batch_id}.json"
    report = json.loads(report_path.read_text("utf-8"))
    assert (report["status"], report["source_name"], report["balanced"]) == ("refused", name, True)
    assert any("unreadable" in sentence and name in sentence for sentence in report["refusal"])
    assert (pulled["home"] / "outbox" / "statistics" / "divisions" / f"{batch_id}.txt").is_file()


def test_a_second_pull_takes_none_of_the_drop_again(pulled: dict[str, Any]) -> None:
    assert pipeline.pull(pulled["home"], FEED) == []
