"""The node registry: a node's store is its nearest ancestor-or-self entry; a setting that would
strand a node's data, a store that cannot be reached or is not one civicnet knows is refused; a
password never reaches a message or the status."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from civicnet import context
from civicnet.cli import main
from warehouse import pgnode
from warehouse.stores import (
    FILE_STORE,
    FileStore,
    NodeStoreConfigError,
    ServerStore,
    read_registry,
    set_store,
    store_of,
    store_url,
)

CITY, FUTIAN, STREET, COMMUNITY = "440300000000", "440304000000", "440304001000", "440304001001"
SERVER = "postgresql://127.0.0.1/test"


def test_without_a_registry_every_node_is_a_duckdb_file(tmp_path: Path) -> None:
    store = store_of(tmp_path, STREET)
    assert isinstance(store, FileStore) and store.local == tmp_path / "nodes" / "street" / f"{STREET}.duckdb"
    assert read_registry(tmp_path) == {}


def test_the_nearest_entry_above_a_node_decides(tmp_path: Path) -> None:
    set_store(tmp_path, CITY, SERVER, context.contracts())
    set_store(tmp_path, FUTIAN, FILE_STORE, context.contracts())
    set_store(tmp_path, STREET, SERVER, context.contracts())
    assert store_url(tmp_path, CITY) == SERVER and store_url(tmp_path, "440303000000") == SERVER
    assert store_url(tmp_path, FUTIAN) == FILE_STORE and store_url(tmp_path, "440304002000") == FILE_STORE
    assert store_url(tmp_path, STREET) == SERVER and store_url(tmp_path, COMMUNITY) == SERVER
    copy = store_of(tmp_path, COMMUNITY)
    assert isinstance(copy, ServerStore) and copy.local == tmp_path / "mirrors" / "community" / f"{COMMUNITY}.duckdb"
    assert copy.url == f"{SERVER}#civicnet_{COMMUNITY}"


def test_a_node_holding_data_is_not_moved_by_a_setting(tmp_path: Path) -> None:
    node = tmp_path / "nodes" / "street" / f"{STREET}.duckdb"
    node.parent.mkdir(parents=True)
    node.write_bytes(b"a node file")
    with pytest.raises(NodeStoreConfigError, match=f"node {STREET} holds data in duckdb"):
        set_store(tmp_path, FUTIAN, SERVER, context.contracts())
    assert read_registry(tmp_path) == {}  # nothing was written


def test_an_unknown_store_and_a_bad_code_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NodeStoreConfigError, match="neither 'duckdb' nor a postgresql:// URL"):
        set_store(tmp_path, CITY, "mysql://db/x", context.contracts())
    with pytest.raises(pgnode.ServerUnreachableError, match="check that the PostgreSQL server is running") as err:
        set_store(tmp_path, CITY, "postgresql://someone:hunter2@127.0.0.1:1/none", context.contracts())
    assert "hunter2" not in str(err.value)


def test_a_damaged_registry_names_itself_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "nodes" / "stores.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"format": 1, "stores": {"4403": "duckdb"}}))
    with pytest.raises(NodeStoreConfigError, match=r"is not a node registry.*civicnet nodes set"):
        store_of(tmp_path, CITY)


def test_redacted_urls_keep_no_password_or_query() -> None:
    assert pgnode.redacted("postgresql://u:pw@db.example:5433/civicnet?sslmode=require") == \
        "postgresql://u@db.example:5433/civicnet"
    assert "pw" not in pgnode.redacted_text("failed for postgresql://u:pw@h/d: refused")


def test_the_cli_sets_and_lists_the_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    assert main(["--home", str(home), "init"]) == 0
    assert main(["--home", str(home), "nodes", "set", CITY, SERVER]) == 0
    assert main(["--home", str(home), "nodes", "set", CITY, SERVER]) == 0  # again: the same registry
    capsys.readouterr()
    assert main(["--home", str(home), "nodes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"default": "duckdb", "stores": {CITY: SERVER}}
    assert main(["--home", str(home), "nodes", "set", CITY]) == 2  # no URL


def test_a_server_node_probes_its_key_index_for_a_few_keys(tmp_path: Path) -> None:
    """A new server node has an index on each data table's key and division code, so a push naming
    one key (a single move) does not scan the whole table."""
    db = f"civicnet_test_{uuid.uuid4().hex[:12]}"
    url = f"postgresql://127.0.0.1/{db}"
    _psql("postgres", f"CREATE DATABASE {db}")
    try:
        set_store(tmp_path, CITY, url, context.contracts())
        store = store_of(tmp_path, STREET)
        assert isinstance(store, ServerStore)
        store.prepare(context.contracts())
        schema = pgnode.schema_name(STREET)
        indexes = set(_psql(db, f"SELECT indexname FROM pg_indexes WHERE schemaname = '{schema}'").split())
        assert {"residents_citizen_id", "residents_division_code",
                "facilities_facility_id"} <= indexes
        plan = _psql(db, f"SET enable_seqscan = off; EXPLAIN DELETE FROM {schema}.residents t "
                         "WHERE CAST(t.citizen_id AS VARCHAR) IN ('440304199001011234')")
        assert "residents_citizen_id" in plan
        store.prepare(context.contracts())  # again: the node is left as it is
    finally:
        pgnode.forget_connection(url)
        _psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def _psql(db: str, sql: str) -> str:
    done = subprocess.run(["psql", "-h", "127.0.0.1", "-d", db, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
