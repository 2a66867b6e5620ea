"""The home's paths are pinned: an existing home keeps working only if no path ever moves."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas import layout
from schemas.divisions import InvalidDivisionCodeError

HOME = Path("/srv/civicnet")
STREET = "440304001000"
BATCH = "ab" * 32

# every place of schemas.layout, with the path it has always had (relative to the home)
PINNED: dict[str, tuple[Callable[..., Path], tuple[str, ...], str]] = {
    "marker_file": (layout.marker_file, (), "civicnet-home.json"),
    "nodes_folder": (layout.nodes_folder, (), "nodes"),
    "node_file": (layout.node_file, (STREET,), "nodes/street/440304001000.duckdb"),
    "node_stores_file": (layout.node_stores_file, (), "nodes/stores.json"),
    "mirror_file": (layout.mirror_file, (STREET,), "mirrors/street/440304001000.duckdb"),
    "extracts_folder": (layout.extracts_folder, (), "extracts"),
    "extract_file": (layout.extract_file, ("440300000000",), "extracts/city/440300000000.duckdb"),
    "network_index_file": (layout.network_index_file, (), "extracts/network.json"),
    "landing_folder": (layout.landing_folder, (), "landing"),
    "dataset_landing_folder": (layout.dataset_landing_folder, ("residents",), "landing/residents"),
    "landed_batch_folder": (layout.landed_batch_folder, ("residents", BATCH), f"landing/residents/{BATCH}"),
    "feed_state_file": (layout.feed_state_file, ("residents", "public_security_residents"),
                        "landing/residents/_state/public_security_residents.json"),
    "staging_folder": (layout.staging_folder, (), "staging"),
    "stage_folder": (layout.stage_folder, (BATCH,), f"staging/{BATCH}"),
    "quality_folder": (layout.quality_folder, (), "quality"),
    "data_docs_index": (layout.data_docs_index, (), "quality/gx/data_docs/index.html"),
    "volumes_file": (layout.volumes_file, ("health_stations",), "quality/volumes/health_stations.json"),
    "reconciliation_file": (layout.reconciliation_file, (), "quality/reconciliation.json"),
    "walk_file": (layout.walk_file, ("440303000000",), "quality/walks/440303000000.json"),
    "pages_folder": (layout.pages_folder, (), "reports/quality"),
    "outbox_folder": (layout.outbox_folder, (), "outbox"),
    "senders_file": (layout.senders_file, (), "gateway/senders.json"),
    "receipt_file": (layout.receipt_file, (BATCH,), f"gateway/receipts/{BATCH}.json"),
    "releases_record_file": (layout.releases_record_file, (), "releases/mirrored.json"),
    "airflow_home": (layout.airflow_home, (), "airflow"),
    "airflow_logs": (layout.airflow_logs, (), "airflow/logs"),
    "airflow_service_folder": (layout.airflow_service_folder, (), "airflow/service"),
    "airflow_service_secrets_file": (layout.airflow_service_secrets_file, (), "airflow/service/secrets.json"),
    "feeds_folder": (layout.feeds_folder, (), "feeds"),
    "demo_folder": (layout.demo_folder, (), "demo"),
    "demo_secrets_file": (layout.demo_secrets_file, (), "demo/secrets.json"),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_each_place_keeps_its_path(name: str) -> None:
    place, args, expected = PINNED[name]

    assert place(HOME, *args) == HOME / expected


def test_every_place_is_pinned() -> None:
    public = {name for name, f in inspect.getmembers(layout, inspect.isfunction)
              if f.__module__ == layout.__name__ and not name.startswith("_")}

    assert public == set(PINNED)


def test_every_place_says_what_lives_there() -> None:
    assert all((f.__doc__ or "").strip() for f, _args, _path in PINNED.values())


def test_the_marker_folders_and_secrets_are_the_ones_homes_have_always_had() -> None:
    assert layout.HOME_FOLDERS == ("nodes", "landing", "outbox", "staging")
    assert layout.SECRET_FILES == ("gateway/senders.json", "demo/secrets.json", "airflow/service/secrets.json")


@pytest.mark.parametrize("place", [layout.node_file, layout.extract_file], ids=["node", "extract"])
def test_a_node_path_is_built_from_a_valid_code_only(place: Callable[[Path, str], Path]) -> None:
    with pytest.raises(InvalidDivisionCodeError):
        place(HOME, "../../etc/passwd")
