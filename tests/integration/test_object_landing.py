"""Landing on object storage (issue 12 item 5): batches land in an S3 bucket through fsspec, against
moto's S3 server on loopback, and are read back and merged as from the home's landing folder."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs

from civicnet import pipeline
from civicnet.pipeline import storage
from tests.conftest import AS_OF, FEEDS, S3Server
from warehouse import landing, objectstore
from warehouse.objectstore import ObjectStore, ObjectStoreRefusedError, ObjectStoreUnavailableError, store_of

DATA = "设施编号,名称\nF-001,滨江社区工作站\n".encode()


def manifest(data: bytes = DATA) -> landing.Manifest:
    return landing.Manifest(
        batch_id=hashlib.sha256(data).hexdigest(), feed="civil_affairs_facilities", department="civil_affairs",
        dataset="facilities", source_name="drop.csv", media_type="text/csv", encoding="utf-8",
        byte_size=len(data), row_count=1, received_at=dt.datetime(2021, 6, 30, tzinfo=dt.UTC), cursor={})


@pytest.fixture
def bucket_store(s3_server: S3Server) -> ObjectStore:
    """A store on a fresh bucket of the session's S3 server."""
    return store_of(f"s3://{s3_server.bucket()}/landing", s3_server.options())


@pytest.fixture
def s3_home(tmp_path: Path, bucket_store: ObjectStore) -> Iterator[Path]:
    """A home whose landing is the fresh bucket, unregistered after the test."""
    home = tmp_path / "home"
    home.mkdir()
    landing.use_landing(home, bucket_store)
    yield home
    landing.use_landing(home, None)


def objects(store: ObjectStore) -> list[str]:
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **store.options)
    return sorted(p.split("/", 2)[2] for p in fs.find(store.url))


def test_a_batch_lands_in_the_bucket_and_is_read_back(s3_home: Path, bucket_store: ObjectStore) -> None:
    table = pa.table({"设施编号": ["F-001"], "名称": ["滨江社区工作站"]})
    batch = manifest().batch_id
    assert landing.land(s3_home, manifest(), DATA, table) is True
    assert objects(bucket_store) == [f"facilities/{batch}/{name}"
                                     for name in ("manifest.json", "payload.csv", "raw.parquet")]
    assert not (s3_home / "landing" / "facilities" / batch).exists()  # nothing landed in the home
    assert [m.batch_id for m in landing.landed_batches(s3_home, "facilities")] == [batch]
    assert landing.read_manifest(s3_home, "facilities", batch) == manifest()
    scratch = s3_home / "scratch"
    scratch.mkdir()
    with landing.local_raw(s3_home, "facilities", batch, scratch) as raw:
        assert pq.read_table(raw).equals(table)
    assert list(scratch.iterdir()) == []  # the fetched copy is removed after its reader


def test_the_same_content_twice_is_one_batch(s3_home: Path, bucket_store: ObjectStore) -> None:
    table = pa.table({"设施编号": ["F-001"]})
    assert landing.land(s3_home, manifest(), DATA, table) is True
    before = objects(bucket_store)
    later = landing.Manifest(**{**manifest().__dict__, "received_at": dt.datetime(2021, 7, 1, tzinfo=dt.UTC)})
    assert landing.land(s3_home, later, DATA, table) is False
    assert objects(bucket_store) == before
    assert [m.received_at for m in landing.landed_batches(s3_home, "facilities")] == [manifest().received_at]


def test_a_cursor_is_kept_in_the_bucket(s3_home: Path, bucket_store: ObjectStore) -> None:
    assert landing.feed_state(s3_home, "facilities", "civil_affairs_facilities") == {}
    landing.save_feed_state(s3_home, "facilities", "civil_affairs_facilities", {"updated_at": "2021-06-30"})
    assert landing.feed_state(s3_home, "facilities", "civil_affairs_facilities") == {"updated_at": "2021-06-30"}
    assert objects(bucket_store) == ["facilities/_state/civil_affairs_facilities.json"]


KILLED_LANDING = textwrap.dedent("""
    import json, os, signal, sys
    from pathlib import Path
    import pyarrow as pa
    from tests.integration.test_object_landing import DATA, manifest
    from warehouse import landing, objectstore
    from warehouse.objectstore import store_of

    store = store_of(sys.argv[2], json.loads(os.environ["STORE_OPTIONS"]))
    landing.use_landing(Path(sys.argv[1]), store)
    write = objectstore.write_text
    def killed_before_the_manifest(store, url, text):
        if url.endswith("/manifest.json"):
            os.kill(os.getpid(), signal.SIGKILL)  # no finally, no cleanup: as a killed worker
        write(store, url, text)
    objectstore.write_text = killed_before_the_manifest
    landing.land(Path(sys.argv[1]), manifest(), DATA, pa.table({"a": [1]}))
""")


def test_a_kill_before_the_manifest_leaves_no_batch_visible(s3_home: Path, bucket_store: ObjectStore,
                                                            s3_server: S3Server) -> None:
    repo = Path(__file__).resolve().parents[2]
    env = os.environ | {"PYTHONPATH": str(repo), "STORE_OPTIONS": json.dumps(s3_server.options())}
    run = subprocess.run([sys.executable, "-c", KILLED_LANDING, str(s3_home), bucket_store.url], env=env,
                         cwd=repo, capture_output=True, text=True, timeout=120)
    assert run.returncode == -9, run.stderr
    batch = manifest().batch_id
    assert objects(bucket_store) == [f"facilities/{batch}/payload.csv", f"facilities/{batch}/raw.parquet"]
    assert landing.landed_batches(s3_home, "facilities") == []  # data objects without a manifest: not landed
    with pytest.raises(landing.UnknownBatchError, match="not landed"):
        landing.read_manifest(s3_home, "facilities", batch)
    with pytest.raises(landing.UnknownBatchError), landing.local_raw(s3_home, "facilities", batch, s3_home):
        pass
    assert landing.land(s3_home, manifest(), DATA, pa.table({"a": [1]})) is True  # the next pull lands it whole
    assert [m.batch_id for m in landing.landed_batches(s3_home, "facilities")] == [batch]


def test_an_unreachable_store_fails_naming_the_url_and_the_fix(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = store_of("s3://civicnet-landing/landing", {"endpoint_url": f"http://127.0.0.1:{port}",
                                                       "key": "AKIDSECRETKEYID", "secret": "do-not-show-me",
                                                       "client_kwargs": {"region_name": "us-east-1"}})
    landing.use_landing(tmp_path, store)
    try:
        with pytest.raises(ObjectStoreUnavailableError) as caught:
            landing.land(tmp_path, manifest(), DATA, pa.table({"a": [1]}))
    finally:
        landing.use_landing(tmp_path, None)
    message = str(caught.value)
    assert "s3://civicnet-landing/landing" in message and "AWS_ENDPOINT_URL" in message
    assert "do-not-show-me" not in message and "AKIDSECRETKEYID" not in message
    assert "do-not-show-me" not in repr(store)
    assert not list((tmp_path / "landing").rglob("*.csv"))  # the decoded copy is not left behind


def test_a_missing_bucket_is_refused_naming_it(s3_server: S3Server, tmp_path: Path) -> None:
    landing.use_landing(tmp_path, store_of("s3://civicnet-no-such-bucket/landing", s3_server.options()))
    try:
        with pytest.raises(ObjectStoreRefusedError, match=r"bucket 'civicnet-no-such-bucket' does not exist"):
            landing.landed_batches(tmp_path, "facilities")
    finally:
        landing.use_landing(tmp_path, None)


def test_a_url_with_credentials_is_refused_without_showing_them() -> None:
    with pytest.raises(ObjectStoreRefusedError) as caught:
        store_of("s3://AKID:hunter2@civicnet/landing")
    assert "hunter2" not in str(caught.value) and "AKID" not in str(caught.value)


def test_a_connection_gives_the_keys_and_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CIVICNET_S3", json.dumps({
        "conn_type": "aws", "login": "AKIDEXAMPLE", "password": "secret-example",
        "extra": {"endpoint_url": "http://minio:9000", "region_name": "cn-south-1"}}))
    store = storage.object_store("s3://civicnet/landing", "civicnet_s3")
    assert store.options == {"key": "AKIDEXAMPLE", "secret": "secret-example", "endpoint_url": "http://minio:9000",
                             "client_kwargs": {"region_name": "cn-south-1"}}
    assert "secret-example" not in repr(store)


def test_airflow_variables_win_over_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVICNET_LANDING_URL", "s3://from-env/landing")
    monkeypatch.setenv("CIVICNET_RELEASES_URL", "s3://from-env/releases")
    monkeypatch.delenv("CIVICNET_OBJECT_STORE_CONN_ID", raising=False)
    try:
        pipeline.use_object_stores(tmp_path, {"CIVICNET_LANDING_URL": "s3://from-variable/landing",
                                              "CIVICNET_RELEASES_URL": None})
        assert landing.landing_place(tmp_path) == "s3://from-variable/landing"
        releases = storage.releases_store(tmp_path)
        assert releases is not None and releases.url == "s3://from-env/releases"
        monkeypatch.delenv("CIVICNET_LANDING_URL")
        monkeypatch.delenv("CIVICNET_RELEASES_URL")
        pipeline.use_object_stores(tmp_path, {})
        assert landing.landing_place(tmp_path) == str(tmp_path / "landing")  # the embedded default again
        assert storage.releases_store(tmp_path) is None
    finally:
        storage.configure(tmp_path, None, None, None)


@pytest.mark.slow
def test_feeds_landed_in_the_bucket_merge_as_from_the_home(round_one_home: Path, tmp_path: Path,
                                                           s3_home: Path, bucket_store: ObjectStore) -> None:
    """The three feeds of the round-one home, pulled again into a home that lands in S3: the same batches,
    and a city node with the same rows and checksums."""
    shutil.copytree(round_one_home / "feeds", s3_home / "feeds")
    for slug in FEEDS:
        pipeline.ingest_feed(s3_home, slug, AS_OF)
    assert not (s3_home / "landing").exists() or not [p for p in (s3_home / "landing").rglob("manifest.json")]
    for dataset in ("divisions", "residents", "facilities"):
        assert ({m.batch_id for m in landing.landed_batches(s3_home, dataset)}
                == {p.parent.name for p in (round_one_home / "landing" / dataset).glob("*/manifest.json")})
    city = pipeline.publish_city(s3_home)
    local = next(n for n in json.loads((round_one_home / "extracts" / "network.json").read_text())["nodes"]
                 if n["tier"] == "city")
    assert city["rows"] == local["rows"] and city["rows"]["residents"] > 0
    assert city["checksums"] == local["checksums"]
    assert pipeline.pull(s3_home, "public_security_residents") == []  # day two: nothing new, nothing pending


def mirrored(server: S3Server, store: ObjectStore) -> dict[str, str | None]:
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **server.options())  # type: ignore[arg-type]
    return {p.split("/", 2)[2]: fs.metadata(p).get("sha256") for p in fs.find(store.url)}


def test_extracts_are_mirrored_once_and_then_only_when_changed(home_copy: Callable[[Path], Path], tmp_path: Path,
                                                              s3_server: S3Server,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The network index step (write_network_index, the network DAG's write_index task) mirrors each
    changed extract and the index; a second run sends nothing, a re-published extract is sent alone."""
    home = home_copy(tmp_path / "home")
    releases = f"s3://{s3_server.bucket()}/releases"
    options = s3_server.options()
    monkeypatch.setenv("AIRFLOW_CONN_CIVICNET_TEST_S3", json.dumps({  # the keys reach it as a connection
        "conn_type": "aws", "login": options["key"], "password": options["secret"],
        "extra": {"endpoint_url": options["endpoint_url"], "region_name": "us-west-2"}}))
    storage.configure(home, None, releases, "civicnet_test_s3")
    store = storage.releases_store(home)
    assert store is not None
    tiers = {"city", "district", "street", "community"}  # one node of each tier: 4 extracts, not 899
    nodes = [n for n in json.loads((home / "extracts" / "network.json").read_text())["nodes"]
             if n["tier"] in tiers and not tiers.discard(n["tier"])]
    city, others = nodes[0], nodes[1:]
    assert city["tier"] == "city"

    def index_step() -> list[str]:
        before = set(mirrored(s3_server, store))
        pipeline.write_network_index(home, [others], city)
        after = mirrored(s3_server, store)
        return sorted(k for k in after if k not in before or after[k] != found.get(k))

    try:
        found: dict[str, str | None] = {}
        assert index_step() == sorted([f"extracts/{n['tier']}/{n['code']}.duckdb" for n in nodes]
                                      + ["extracts/network.json"])
        found = mirrored(s3_server, store)
        extract = home / "extracts" / "city" / f"{city['code']}.duckdb"
        assert found[f"extracts/city/{city['code']}.duckdb"] == objectstore.file_sha256(extract)  # in the metadata
        assert index_step() == []  # day two: nothing changed, nothing sent
        street = home / "extracts" / "street" / f"{others[1]['code']}.duckdb"
        street.write_bytes(street.read_bytes() + b"\0")  # a re-published extract
        assert index_step() == [f"extracts/street/{others[1]['code']}.duckdb"]
        assert mirrored(s3_server, store)[f"extracts/street/{others[1]['code']}.duckdb"] == objectstore.file_sha256(
            street)
    finally:
        storage.configure(home, None, None, None)


def test_a_lost_mirror_record_uploads_nothing_that_is_there(tmp_path: Path, s3_server: S3Server) -> None:
    """Without the local record every file is checked against the sha256 in its object's metadata: the
    objects already there are not sent again, and an object changed in the store is."""
    store = store_of(f"s3://{s3_server.bucket()}/releases", s3_server.options())
    files = []
    for n in range(3):
        path = tmp_path / f"{n}.duckdb"
        path.write_bytes(f"extract {n}".encode())
        files.append((path, store.key("extracts", path.name)))
    sent, record = objectstore.mirror_files(store, files, {}, {})
    assert sent == [url for _, url in files]
    assert objectstore.mirror_files(store, files, {}, objectstore.etags(store, store.key("extracts")))[0] == []
    other = tmp_path / "other"
    other.write_bytes(b"overwritten in the store by hand")
    objectstore.upload(store, other, files[1][1])  # no sha256 metadata: not what civicnet sent
    assert objectstore.mirror_files(store, files, record, objectstore.etags(store, store.key("extracts")))[0] == [
        files[1][1]]


def test_a_batch_landed_by_another_process_is_listed_at_once(s3_home: Path, bucket_store: ObjectStore,
                                                             s3_server: S3Server) -> None:
    """A long-lived process (the gateway, a Celery worker) lists the bucket again each time: a batch
    another process landed meanwhile is seen (no stale listing cache)."""
    assert landing.land(s3_home, manifest(), DATA, pa.table({"a": [1]})) is True
    assert len(landing.landed_batches(s3_home, "facilities")) == 1
    data = b"another,drop\n"
    theirs = landing.Manifest(**{**manifest().__dict__, "batch_id": hashlib.sha256(data).hexdigest()})
    another = s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.options())  # type: ignore[arg-type]
    another.pipe_file(bucket_store.key("facilities", theirs.batch_id, "manifest.json"),
                      theirs.to_json().encode())  # the last write of another process's landing
    assert {m.batch_id for m in landing.landed_batches(s3_home, "facilities")} == {manifest().batch_id,
                                                                                  theirs.batch_id}
