"""One test body, every node store: the same home with its nodes in DuckDB files (a copy of the
reference home), every node in schemas of the machine's PostgreSQL, and a mixed tree (the city and
福田's whole subtree on PostgreSQL, every other district's nodes in DuckDB files, so rows cross
PostgreSQL → DuckDB and PostgreSQL → PostgreSQL).

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
from conftest import AS_OF, build_home, copy_home
from test_sync_kill import sync_until_killed

from civicnet import context, pipeline
from civicnet.bench import invariants
from civicnet.demo.data import generate_changes
from civicnet.pipeline.status import collect
from civicnet.pipeline.verify import verify_district
from warehouse import pgnode
from warehouse.stores import FILE_STORE, ServerStore, set_store, store_of

pytestmark = pytest.mark.slow

CITY, FUTIAN = "440300000000", "440304000000"
STREET = "440304001000"  # a street of 福田: on the server in the mixed tree
ENGINES = ("duckdb", "postgresql", "mixed")


def _psql(db: str, sql: str) -> str:
    done = subprocess.run(["psql", "-h", "127.0.0.1", "-d", db, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module", params=ENGINES)
def engine_home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                round_one_home: Path) -> Iterator[Path]:
    """A round-one home on this engine (the database, if any, dropped afterwards); on DuckDB files, a
    copy of the reference home the pipeline built."""
    home = tmp_path_factory.mktemp(f"stores_{request.param}")
    if request.param == "duckdb":
        yield copy_home(round_one_home, home)
        return
    db = f"civicnet_test_{uuid.uuid4().hex[:12]}"
    _psql("postgres", f"CREATE DATABASE {db}")
    set_store(home, CITY, f"postgresql://127.0.0.1/{db}", context.contracts())
    if request.param == "mixed":
        for district in context.districts():
            if district != FUTIAN:
                set_store(home, district, FILE_STORE, context.contracts())
    try:
        yield build_home(home)
    finally:
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
    engine = engine_home.name.removeprefix("stores_").rstrip("0123456789")  # the fixture's mktemp name
    on_server = engine != "duckdb"
    assert isinstance(city, ServerStore) is on_server and isinstance(street, ServerStore) is on_server
    assert isinstance(other, ServerStore) is (engine == "postgresql")
    if on_server:
        assert "#civicnet_440300000000" in city.url and "password" not in city.url
        assert not (engine_home / "nodes" / "city" / f"{CITY}.duckdb").exists()  # the city lives on the server


def test_every_node_holds_what_the_duckdb_reference_holds(engine_home: Path, round_one_home: Path) -> None:
    assert _index(engine_home) == _index(round_one_home)


def test_every_extract_holds_its_jurisdiction_and_each_tier_adds_up(engine_home: Path) -> None:
    held = invariants.check(engine_home)
    assert held["nodes"] == 899 and held["outside_jurisdiction"] == {} and held["tier_sum_mismatches"] == []
    assert held["unbalanced_batches"] == [] and held["hold"]


def test_the_server_is_the_store_of_record(engine_home: Path) -> None:
    """The local copies of the city and of 福田's whole subtree lost: the next sync rebuilds them
    from the server and changes nothing (on DuckDB files there are no copies to lose)."""
    before = _index(engine_home)
    lost = [p for p in (engine_home / "mirrors").glob("*/*.duckdb*") if p.name.startswith((CITY, FUTIAN[:6]))]
    assert bool(lost) is isinstance(store_of(engine_home, CITY), ServerStore)
    for path in lost:
        path.unlink()
    pipeline.sync_network(engine_home)
    assert _index(engine_home) == before
    assert all(p.exists() for p in lost if p.suffix == ".duckdb")


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
