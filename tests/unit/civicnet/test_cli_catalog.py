"""`civicnet feeds`, `civicnet datasets` and `civicnet --version`: what the installation ships."""

from __future__ import annotations

import importlib.metadata
import json

import pytest

from civicnet.cli import main
from connectors.feeds import load_feeds
from schemas.contract import load_contracts


def test_feeds_json_lists_every_shipped_feed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["feeds", "--json"]) == 0

    listed = json.loads(capsys.readouterr().out)
    assert listed == [{"slug": f.slug, "department": f.department, "dataset": f.dataset,
                       "connector": f.connector.kind, "schedule": f.schedule}
                      for f in sorted(load_feeds().values(), key=lambda f: f.slug)]
    assert {"files", "sql", "rest", "singer", "push"} <= {f["connector"] for f in listed}


def test_feeds_table_has_a_line_per_feed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["feeds"]) == 0

    header, *lines = capsys.readouterr().out.strip().splitlines()
    assert header.split() == ["feed", "department", "dataset", "connector", "schedule"]
    feeds = load_feeds()
    assert [line.split()[0] for line in lines] == sorted(feeds)
    by_slug = {line.split()[0]: line.split() for line in lines}
    assert by_slug["community_expenditures"][1:] == ["civil_affairs", "community_expenditures", "push",
                                                     "on-push"]
    assert by_slug["public_security_residents"][3:] == ["files", "@daily"]


def test_datasets_json_lists_every_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "--json"]) == 0

    listed = json.loads(capsys.readouterr().out)
    assert listed == [{"slug": c.name, "title": c.title, "owner": c.owner, "tiers": list(c.reaches),
                       "version": c.version} for c in sorted(load_contracts().values(), key=lambda c: c.name)]
    assert next(d for d in listed if d["slug"] == "residents")["title"] == "社区居民"


def test_datasets_table_shows_the_chinese_titles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets"]) == 0

    header, *lines = capsys.readouterr().out.strip().splitlines()
    assert header.split() == ["dataset", "title", "owner", "tiers", "version"]
    contracts = load_contracts()
    assert [line.split()[0] for line in lines] == sorted(contracts)
    residents = next(line.split() for line in lines if line.startswith("residents "))
    assert residents[1:3] == ["社区居民", "public_security"]
    assert residents[3] == ",".join(contracts["residents"].reaches)
    assert residents[4] == contracts["residents"].version


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])

    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"civicnet {importlib.metadata.version('civicnet')}"
