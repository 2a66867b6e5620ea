"""Server mode's object stores for a home: where its landing lives and where its releases are mirrored.

The CLI and the gateway configure them from their Settings (CIVICNET_LANDING_URL, CIVICNET_RELEASES_URL,
CIVICNET_OBJECT_STORE_CONN_ID), each DAG task from the Airflow variables of the same names in lower case
(`civicnet_landing_url`, ...), falling back to the environment (dags/task_policy.py). Credentials come
from the standard places: the Airflow connection the setting names (login = access key, password =
secret key, extra `endpoint_url` and `region_name`), else the AWS variables botocore reads itself.

After the network index is written, `mirror_releases` uploads each extract and the index whose content
changed to `<releases>/extracts/<tier>/<code>.duckdb` and `<releases>/extracts/network.json`, each with
its sha256 in the object's metadata: a run that changed nothing uploads nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from civicnet.settings import Settings
from connectors.secrets import Connection, get_connection
from schemas.homefiles import make_folder, write_atomic
from schemas.layout import extracts_folder, network_index_file, releases_record_file
from warehouse import objectstore
from warehouse.objectstore import Mirrored, ObjectStore, store_of

log = logging.getLogger(__name__)
_releases: dict[Path, ObjectStore] = {}


def connection_options(conn: Connection) -> dict[str, Any]:
    """fsspec/s3fs storage options from an Airflow connection (an `aws` connection, or any with a login
    and password): the keys, and the endpoint of an S3-compatible store such as MinIO."""
    options: dict[str, Any] = {}
    key = conn.login or conn.extra.get("aws_access_key_id")
    secret = conn.password or conn.extra.get("aws_secret_access_key")
    if key:
        options["key"] = str(key)
    if secret:
        options["secret"] = str(secret)
    endpoint = conn.extra.get("endpoint_url") or (conn.host if conn.host.startswith(("http://", "https://")) else None)
    if endpoint:
        options["endpoint_url"] = str(endpoint)
    if conn.extra.get("region_name"):
        options["client_kwargs"] = {"region_name": str(conn.extra["region_name"])}
    return options


def object_store(url: str, conn_id: str | None) -> ObjectStore:
    """The store at `url`, reached with the connection `conn_id` (None: the AWS variables)."""
    options = connection_options(get_connection(conn_id)) if conn_id else {}
    return store_of(url, options)


def use_object_stores(home: Path, overrides: Mapping[str, str | None] | None = None) -> None:
    """Register `home`'s landing and releases stores for this process: from the environment
    (Settings.from_env), each setting replaced by an override given (the DAG tasks' Airflow variables,
    keyed by their environment names). A setting left unset keeps the embedded default."""
    given = {k: v for k, v in (overrides or {}).items() if v}
    settings = Settings.from_env(home)
    landing_url = given.get("CIVICNET_LANDING_URL", settings.landing_url)
    releases_url = given.get("CIVICNET_RELEASES_URL", settings.releases_url)
    conn_id = given.get("CIVICNET_OBJECT_STORE_CONN_ID", settings.object_store_conn_id)
    configure(home, landing_url, releases_url, conn_id)


def configure(home: Path, landing_url: str | None, releases_url: str | None, conn_id: str | None) -> None:
    """Register the stores of `home` for this process (a None URL: the embedded default)."""
    from warehouse import landing

    landing.use_landing(home, object_store(landing_url, conn_id) if landing_url else None)
    if releases_url:
        _releases[home.resolve()] = object_store(releases_url, conn_id)
    else:
        _releases.pop(home.resolve(), None)


def use_settings(settings: Settings) -> None:
    """Register the stores Settings name for its home (the CLI and the gateway)."""
    configure(settings.home, settings.landing_url, settings.releases_url, settings.object_store_conn_id)


def releases_store(home: Path) -> ObjectStore | None:
    """Where `home`'s releases are mirrored, or None (not mirrored)."""
    return _releases.get(home.resolve())


def mirror_releases(home: Path, extracts: list[Path]) -> list[str]:
    """Upload each of the extracts (those the network index lists), and the index itself (last: it names
    the others), whose content is not already in the releases store; returns the URLs uploaded (none
    without a store).

    What was uploaded is recorded in `releases/mirrored.json` with each object's ETag, so a run that
    changed nothing lists the store once and hashes no unchanged file (warehouse.objectstore.mirror_files)."""
    store = releases_store(home)
    index = network_index_file(home)
    if store is None or not index.exists():
        return []
    root = extracts_folder(home)
    paths = [path for path in extracts if path.exists()] + [index]
    files = [(path, store.key("extracts", *path.relative_to(root).parts)) for path in paths]
    record_path = releases_record_file(home)
    record = _read_record(record_path)
    earlier = record.get("objects", {}) if record.get("store") == store.url else {}  # another store: check all
    sent, now = objectstore.mirror_files(store, files, earlier, objectstore.etags(store, store.key("extracts")))
    write_atomic(make_folder(record_path.parent) / record_path.name, json.dumps(
        {"store": store.url, "objects": {url: m.to_dict() for url, m in now.items()}}, indent=0))
    log.info("releases: %d of %d files uploaded to %s (the others unchanged)", len(sent), len(files), store.url)
    return sent


def _read_record(path: Path) -> dict[str, Any]:
    """The mirror record (empty if none or unreadable: every file is then checked against the store)."""
    try:
        raw = json.loads(path.read_text("utf-8"))
        return {"store": raw["store"], "objects": {url: Mirrored(**m) for url, m in raw["objects"].items()}}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
