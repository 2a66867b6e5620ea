"""Feed configs: the shipped feeds load and fit their contracts; malformed configs are refused."""

from __future__ import annotations

import copy
import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.feeds import FeedConfigError, FilesSource, SqlSource, load_feed, load_feeds
from connectors.files import FilesConnector
from connectors.registry import connector_for
from connectors.sql import SqlConnector
from schemas.contract import load_contracts

SHIPPED = ("civil_affairs_facilities", "community_expenditures", "health_stations", "justice_mediation_committees",
           "public_security_residents", "statistics_divisions")
RESIDENTS_FEED: dict[str, Any] = yaml.safe_load(
    (resources.files("connectors") / "feeds" / "public_security_residents.yaml").read_text("utf-8"))


def make_feed(connector: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """The shipped residents feed as a dict, with top-level keys or connector keys replaced."""
    raw = copy.deepcopy(RESIDENTS_FEED)
    raw.update(overrides)
    raw["connector"].update(connector or {})
    return raw


def write_feed(folder: Path, raw: Any, file_name: str = "public_security_residents.yaml") -> Path:
    path = folder / file_name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, allow_unicode=True),
                    encoding="utf-8")
    return path


def test_shipped_feeds_load() -> None:
    feeds = load_feeds()
    assert sorted(feeds) == list(SHIPPED)
    residents = feeds["public_security_residents"]
    assert residents.dataset == "residents"
    assert isinstance(residents.connector, FilesSource)
    assert residents.connector.encoding == "gb18030"
    assert residents.values["sex"] == {"男": "1", "女": "2"}
    facilities = feeds["civil_affairs_facilities"]
    assert isinstance(facilities.connector, SqlSource)
    assert facilities.connector.table == "community_facility"
    assert facilities.ignore == ["updated_at"]
    assert facilities.deleted == "is_deleted"
    kinds = {f.connector.kind for f in feeds.values()}
    assert kinds == {"files", "sql", "rest", "singer", "push"}  # the demo uses every kind


@pytest.mark.parametrize("slug", SHIPPED, ids=SHIPPED)
def test_shipped_feed_fits_its_contract(slug: str) -> None:
    feed = load_feeds()[slug]
    contract = load_contracts()[feed.dataset]
    assert feed.department == contract.owner  # one data, one source
    targets = list(feed.fields.values())
    assert len(set(targets)) == len(targets)
    assert set(targets) | set(feed.constants) == set(contract.field_names)
    assert set(feed.values) | set(feed.dates) <= set(contract.field_names)
    assert all(contract.field(f).type == "date" for f in feed.dates)


def test_the_factory_without_overrides_loads(tmp_path: Path) -> None:
    feed = load_feed(write_feed(tmp_path, make_feed()))
    assert feed.slug == "public_security_residents"


BROKEN = {
    "unknown-top-level-key": (make_feed(schedul="@daily"), "schedul"),
    "unknown-connector-key": (make_feed(connector={"encodng": "gbk"}), "encodng"),
    "unknown-connector-kind": (make_feed(connector={"kind": "ftp"}), "kind"),
    "missing-dataset": ({k: v for k, v in make_feed().items() if k != "dataset"}, "dataset"),
    "fields-not-a-mapping": (make_feed(fields=["姓名", "性别"]), "fields"),
    "invalid-yaml": ("slug: [public_security_residents\n", "public_security_residents.yaml"),
}


@pytest.mark.parametrize(("raw", "named"), list(BROKEN.values()), ids=list(BROKEN))
def test_malformed_feed_is_refused_naming_file_and_key(tmp_path: Path, raw: Any, named: str) -> None:
    path = write_feed(tmp_path, raw)
    with pytest.raises(FeedConfigError) as caught:
        load_feed(path)
    message = str(caught.value)
    assert str(path) in message
    assert named in message


def test_slug_differing_from_file_name_is_refused(tmp_path: Path) -> None:
    path = write_feed(tmp_path, make_feed(), file_name="residents.yaml")
    with pytest.raises(FeedConfigError, match="slug 'public_security_residents' must equal the file name"):
        load_feed(path)


def test_unknown_encoding_is_refused_when_the_config_loads(tmp_path: Path) -> None:
    # Otherwise the first file fails much later with a bare LookupError in connectors.parse_encoding.
    path = write_feed(tmp_path, make_feed(connector={"encoding": "gb-18030x"}))
    with pytest.raises(FeedConfigError, match="gb-18030x"):
        load_feed(path)


def test_load_feeds_reads_a_folder_by_slug(tmp_path: Path) -> None:
    write_feed(tmp_path, make_feed())
    feeds = load_feeds(tmp_path)
    assert list(feeds) == ["public_security_residents"]


def test_load_feeds_refuses_a_folder_with_one_bad_feed(tmp_path: Path) -> None:
    write_feed(tmp_path, make_feed())
    write_feed(tmp_path, make_feed(slug="other"), file_name="zz.yaml")
    with pytest.raises(FeedConfigError, match=r"zz\.yaml"):
        load_feeds(tmp_path)


def test_a_feed_of_a_department_that_does_not_own_its_dataset_is_refused(tmp_path: Path) -> None:
    # one data, one source: residents belong to public_security (schemas/datasets/residents.yaml)
    write_feed(tmp_path, make_feed(department="civil_affairs"))
    with pytest.raises(FeedConfigError) as caught:
        load_feeds(tmp_path)
    message = str(caught.value)
    assert "public_security_residents.yaml" in message  # the feed file
    assert "'civil_affairs'" in message and "'residents'" in message  # its department, its dataset
    assert "schemas/datasets/residents.yaml" in message and "'public_security' as its owner" in message
    assert "Set 'department: public_security'" in message  # how to fix


def test_the_owner_check_uses_the_contracts_given(tmp_path: Path) -> None:
    write_feed(tmp_path, make_feed())
    residents = load_contracts()["residents"]
    moved = {"residents": dataclasses.replace(residents, owner="population")}
    with pytest.raises(FeedConfigError, match="'population' as its owner"):
        load_feeds(tmp_path, moved)
    assert list(load_feeds(tmp_path, {"residents": residents})) == ["public_security_residents"]


def test_a_feed_of_a_dataset_without_a_contract_is_refused(tmp_path: Path) -> None:
    write_feed(tmp_path, make_feed(dataset="residentz"))
    with pytest.raises(FeedConfigError, match=r"dataset 'residentz' has no contract .*residents"):
        load_feeds(tmp_path)


def test_connector_for_fills_in_home(tmp_path: Path) -> None:
    feeds = load_feeds()
    files = connector_for(feeds["public_security_residents"], tmp_path)
    assert isinstance(files, FilesConnector)
    assert files.source.path == str(tmp_path / "feeds" / "public_security" / "residents")
    assert (files.source.pattern, files.source.encoding) == ("*.csv", "gb18030")
    assert files.key == ("公民身份号码",)
    sql = connector_for(feeds["civil_affairs_facilities"], tmp_path)
    assert isinstance(sql, SqlConnector)
    assert sql.source.url == f"sqlite:///{tmp_path}/feeds/civil_affairs/facilities.sqlite"
    assert (sql.source.table, sql.source.cursor, sql.key) == ("community_facility", "updated_at", ("fac_no",))
    tap = connector_for(feeds["justice_mediation_committees"], tmp_path)
    assert tap.source.config["source"] == f"{tmp_path}/feeds/justice/committees.json"  # type: ignore[attr-defined]


INCREMENTAL = {  # a connector of each kind that delivers only what changed, and how the fix is named
    "sql": ({"kind": "sql", "url": "sqlite:///x.sqlite", "table": "t", "cursor": "updated_at"}, "cursor"),
    "rest": ({"kind": "rest", "conn_id": "api", "path": "/x", "cursor": {"field": "updated_at"}}, "cursor"),
    "singer": ({"kind": "singer", "command": ["tap"], "stream": "s"}, "replication"),
    "push": ({"kind": "push", "senders": ["owner", "community"]}, "senders"),
}


@pytest.mark.parametrize("kind", sorted(INCREMENTAL), ids=sorted(INCREMENTAL))
def test_an_incremental_feed_declared_a_whole_register_is_refused(tmp_path: Path, kind: str) -> None:
    connector, fix = INCREMENTAL[kind]
    raw = make_feed(delivery="full")
    raw["connector"] = connector
    with pytest.raises(FeedConfigError) as caught:
        load_feed(write_feed(tmp_path, raw))
    message = str(caught.value)
    assert "public_security_residents" in message and "delivery: full" in message and fix in message


@pytest.mark.parametrize("connector", [
    {"kind": "sql", "url": "sqlite:///x.sqlite", "table": "t"},
    {"kind": "rest", "conn_id": "api", "path": "/x"},
    {"kind": "singer", "command": ["tap"], "stream": "s", "replication": "full_table"},
    {"kind": "push", "senders": ["owner"]},
], ids=["sql-snapshot", "rest-snapshot", "singer-full-table", "push-owner"])
def test_a_snapshot_feed_may_be_declared_a_whole_register(tmp_path: Path, connector: dict[str, Any]) -> None:
    raw = make_feed(delivery="full")
    raw["connector"] = connector
    assert load_feed(write_feed(tmp_path, raw)).delivery == "full"


def test_the_justice_tap_is_an_incremental_feed_of_changes() -> None:
    # its tap sends the committees edited since its bookmark: declared `full`, a day's few edits were
    # refused by the volume gate as a truncated export (every shipped feed loading proves the rest)
    feed = load_feeds()["justice_mediation_committees"]
    assert (feed.connector.kind, getattr(feed.connector, "replication", None), feed.delivery) == \
        ("singer", "incremental", "changes")
