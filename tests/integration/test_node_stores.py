"""One test body, every node store: the same home built with its nodes in DuckDB files and in a
mixed tree (the city and 福田's whole subtree in schemas of the machine's PostgreSQL, every other
district's nodes in DuckDB files, so rows cross PostgreSQL → DuckDB and PostgreSQL → PostgreSQL).

Each engine's home must hold, node for node, exactly the rows and checksums of the DuckDB
reference homes built through the same pipeline (`round_one_home`, `demo_home`: their jurisdiction
and tier sums are test_network's), after the initial load and after the 1 % change; lose every
local copy and sync again without changing anything; and find a row altered in a node's store of
record, repair it, and agree afterwards. A fresh database per engine home, dropped at the end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import AS_OF, build_home
from test_sync_kill import sync_until_killed

from civicnet import context, pipeline
from civicnet.demo.data import generate_changes
from civicnet.pipeline.status import collect
from civicnet.pipeline.verify import verify_district
from warehouse import pgnode
from warehouse.stores import FILE_STORE, ServerStore, set_store, store_of

pytestmark = pytest.mark.slow

CITY, FUTIAN = "440300000000", "440304000000"
STREET = "440304001000"  # a street of 福田: on the server in the mixed tree
ENGINES = ("duckdb", "mixed")


def _psql(db: str, sql: str) -> str:
    done = subprocess.run(["psql", "-h", "127.0.0.1", "-d", db, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module", params=ENGINES)
def engine_home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A round-one home on this engine (the database, if any, dropped afterwards)."""
    home = tmp_path_factory.mktemp(f"stores_{request.param}")
    db = None
    if request.param == "mixed":
        db = f"civicnet_test_{uuid.uuid4().hex[:12]}"
        _psql("postgres", f"CREATE DATABASE {db}")
        url = f"postgresql://127.0.0.1/{db}"
        set_store(home, CITY, url, context.contracts())
        for district in context.districts():
            if district != FUTIAN:
                set_store(home, district, FILE_STORE, context.contracts())
    try:
        yield build_home(home)
    finally:
        if db is not None:
            pgnode.forget_connection(f"postgresql://127.0.0.1/{db}")
            _psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def _index(home: Path) -> dict[str, tuple[Any, Any]]:
    index = json.loads((home / "extracts" / "network.json").read_text("utf-8"))
    return {n["code"]: (n["rows"], n["checksums"]) for n in index["nodes"]}


def test_the_stores_are_the_ones_the_registry_names(engine_home: Path) -> None:
    status = {n["code"]: n for n in collect(engine_home).to_dict()["nodes"]}
    city, street = store_of(engine_home, CITY), store_of(engine_home, STREET)
    other = store_of(engine_home, "440303000000")
    assert status[CITY]["store"] == city.url and status[STREET]["store"] == street.url
    mixed = isinstance(city, ServerStore)
    assert isinstance(street, ServerStore) is mixed and not isinstance(other, ServerStore)
    if mixed:
        assert "#civicnet_440300000000" in city.url and "password" not in city.url
        assert not (engine_home / "nodes" / "city" / f"{CITY}.duckdb").exists()  # the city lives on the server


def test_every_node_holds_what_the_duckdb_reference_holds(engine_home: Path, round_one_home: Path) -> None:
    assert _index(engine_home) == _index(round_one_home)


def test_the_server_is_the_store_of_record(engine_home: Path) -> None:
    """Every local copy lost: the next sync rebuilds them from the server and changes nothing."""
    before = _index(engine_home)
    shutil.rmtree(engine_home / "mirrors", ignore_errors=True)
    pipeline.sync_network(engine_home)
    assert _index(engine_home) == before


def test_a_row_altered_in_the_store_of_record_is_found_and_repaired(engine_home: Path) -> None:
    store = store_of(engine_home, STREET)
    if isinstance(store, ServerStore):
        db = store.server.rsplit("/", 1)[1]
        _psql(db, f"UPDATE {pgnode.schema_name(STREET)}.residents SET name = name || '改' "
                  "WHERE citizen_id = (SELECT min(citizen_id) FROM " + pgnode.schema_name(STREET) + ".residents)")
    else:
        with duckdb.connect(str(store.local)) as con:
            con.execute("UPDATE residents SET name = name || '改' "
                        "WHERE citizen_id = (SELECT min(citizen_id) FROM residents)")
    found = verify_district(engine_home, FUTIAN)
    assert not found.agrees and {m.node for m in found.remaining} == {STREET}
    repaired = verify_district(engine_home, FUTIAN, repair=True)
    assert [r.node for r in repaired.repaired] == [STREET]
    assert verify_district(engine_home, FUTIAN).agrees


def test_the_one_percent_change_survives_kills_and_stale_copies(engine_home: Path, demo_home: Path,
                                                                tmp_path: Path) -> None:
    """The 1 % change drop (half of it moves) merged, its sync SIGKILLed after 300 nodes, then every
    local copy put back as it was before the change — the state a kill between each server commit
    and its local commit leaves — and synced again: every node as after one clean run (demo_home)."""
    mirrors = engine_home / "mirrors"
    if mirrors.exists():
        shutil.copytree(mirrors, tmp_path / "before")
    generate_changes(engine_home, fraction=0.01)
    pipeline.ingest_feed(engine_home, "public_security_residents", AS_OF)
    assert len(sync_until_killed(engine_home, 300, tmp_path / "killed.log")) == 300
    if mirrors.exists():
        shutil.rmtree(mirrors)
        shutil.copytree(tmp_path / "before", mirrors)
    pipeline.sync_network(engine_home)
    assert _index(engine_home) == _index(demo_home)
    assert verify_district(engine_home, FUTIAN).agrees
