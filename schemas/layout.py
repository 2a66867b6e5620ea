"""Where everything lives under a civicnet home: the one owner of the home's paths.

Every package asks this module for a place in the home instead of joining names itself, so the
tree below is the whole floor plan (`./var` by default; `--home` or $CIVICNET_HOME chooses):

    <home>/
    ├── civicnet-home.json              marker: this folder is a civicnet home (civicnet.pipeline.home)
    ├── nodes/<tier>/<code>.duckdb      one store per division (warehouse.node)
    ├── nodes/stores.json               the node registry: subtrees kept on a PostgreSQL server (warehouse.stores)
    ├── mirrors/<tier>/<code>.duckdb    the local working copy of a node kept on a server (warehouse.stores)
    ├── extracts/
    │   ├── <tier>/<code>.duckdb        each node as published for analysts (warehouse.extract)
    │   └── network.json                the network index: every node, its extract, rows and checksums
    ├── landing/<dataset>/
    │   ├── <batch_id>/                 a raw payload as received, its decoded table and manifest (warehouse.landing)
    │   └── _state/<feed>.json          a pulled feed's cursor after its last landed payload
    ├── staging/<batch_id>/             a checked batch: accepted and quarantined rows, check record, GX results
    ├── quality/
    │   ├── gx/                         the GX project; its Data Docs in gx/data_docs/ (quality.docs)
    │   ├── volumes/<feed>.json         a feed's recent batch sizes, for the volume gate (quality.volume)
    │   ├── walks/<district>.json       a district's last sync walk: its checks, the totals used (warehouse.walkstore)
    │   └── reconciliation.json         the last reconciliation of every node with its parent
    ├── reports/quality/<run>.html      the quality pages, index.html the latest (quality.page)
    ├── outbox/<sender>/<dataset>/      rejection reports, for whoever sent a batch (quality.rejection)
    ├── gateway/
    │   ├── senders.json                push senders and their token digests, owner-only (connectors.push.senders)
    │   └── receipts/<batch_id>.json    what the gateway received, by batch (warehouse.landing)
    ├── releases/mirrored.json          server mode: what was uploaded to the releases store (civicnet.pipeline.storage)
    ├── airflow/                        AIRFLOW_HOME: metadata database, config, logs/ (civicnet.pipeline.runner)
    │   └── service/                    Airflow as a service: deployment.json, secrets.json (owner-only),
    │                                   run/<component>.json (pid, port), logs/<component>.log (runner.server)
    ├── feeds/                          the demo's department sources; feed configs name them as {home}/feeds/...
    └── demo/                           the demo's step stamps and its departments' credentials, owner-only

The paths are the same for every home ever written: changing one strands existing homes.
"""

from __future__ import annotations

from pathlib import Path

from schemas.divisions import tier_of, validate_code

MARKER = "civicnet-home.json"


def marker_file(home: Path) -> Path:
    """The file that makes a folder a civicnet home."""
    return home / MARKER


def nodes_folder(home: Path) -> Path:
    """Every node's store, one folder per tier."""
    return home / "nodes"


def node_file(home: Path, code: str) -> Path:
    """The store of one division: nodes/<tier>/<code>.duckdb."""
    return nodes_folder(home) / tier_of(code) / f"{validate_code(code)}.duckdb"


def node_stores_file(home: Path) -> Path:
    """The node registry: which subtrees keep their nodes on a PostgreSQL server."""
    return nodes_folder(home) / "stores.json"


def mirror_file(home: Path, code: str) -> Path:
    """The local working copy of a node kept on a server: mirrors/<tier>/<code>.duckdb."""
    return home / "mirrors" / tier_of(code) / f"{validate_code(code)}.duckdb"


def extracts_folder(home: Path) -> Path:
    """What analysts open: every node's published extract, and the network index."""
    return home / "extracts"


def extract_file(home: Path, code: str) -> Path:
    """A node's published extract: extracts/<tier>/<code>.duckdb."""
    return extracts_folder(home) / tier_of(code) / f"{validate_code(code)}.duckdb"


def network_index_file(home: Path) -> Path:
    """The network index: every node, its extract, its rows and checksums per dataset."""
    return extracts_folder(home) / "network.json"


def landing_folder(home: Path) -> Path:
    """Every raw payload as received, one folder per dataset."""
    return home / "landing"


def dataset_landing_folder(home: Path, dataset: str) -> Path:
    """A dataset's landed batches, and its pulled feeds' cursors."""
    return landing_folder(home) / dataset


def landed_batch_folder(home: Path, dataset: str, batch_id: str) -> Path:
    """One landed batch: its payload as received, its decoded table and its manifest."""
    return dataset_landing_folder(home, dataset) / batch_id


def feed_state_file(home: Path, dataset: str, feed: str) -> Path:
    """A pulled feed's cursor, saved after the last payload it covers landed."""
    return dataset_landing_folder(home, dataset) / "_state" / f"{feed}.json"


def staging_folder(home: Path) -> Path:
    """Every checked batch waiting for (or past) its merge."""
    return home / "staging"


def stage_folder(home: Path, batch_id: str) -> Path:
    """One checked batch on disk: accepted and quarantined rows, its check record, GX results."""
    return staging_folder(home) / batch_id


def quality_folder(home: Path) -> Path:
    """The quality state: the GX project (gx/), recent volumes, the last reconciliation."""
    return home / "quality"


def data_docs_index(home: Path) -> Path:
    """The entry page of the GX Data Docs site."""
    return quality_folder(home) / "gx" / "data_docs" / "index.html"


def volumes_file(home: Path, feed: str) -> Path:
    """A feed's last applied batch sizes, for the volume gate."""
    return quality_folder(home) / "volumes" / f"{feed}.json"


def reconciliation_file(home: Path) -> Path:
    """The last reconciliation of every node with its parent (verify's record)."""
    return quality_folder(home) / "reconciliation.json"


def walk_file(home: Path, district: str) -> Path:
    """A district's last sync walk: the reconciliation done on it and the control totals it used."""
    return quality_folder(home) / "walks" / f"{validate_code(district)}.json"


def pages_folder(home: Path) -> Path:
    """The quality pages: one per run, and index.html, the latest."""
    return home / "reports" / "quality"


def outbox_folder(home: Path) -> Path:
    """Rejection reports, one folder per sender or department, then per dataset."""
    return home / "outbox"


def senders_file(home: Path) -> Path:
    """The push gateway's sender registry (token digests): owner-only."""
    return home / "gateway" / "senders.json"


def receipt_file(home: Path, batch_id: str) -> Path:
    """The receipt of a pushed batch: who sent which file, when."""
    return home / "gateway" / "receipts" / f"{batch_id}.json"


def releases_record_file(home: Path) -> Path:
    """Server mode: each extract uploaded to the releases store, with its sha256 and the object's ETag."""
    return home / "releases" / "mirrored.json"


def airflow_home(home: Path) -> Path:
    """AIRFLOW_HOME: Airflow's metadata database, config and plugins."""
    return home / "airflow"


def airflow_logs(home: Path) -> Path:
    """Airflow's logs: task logs, and one log per DAG run through `dags test`."""
    return airflow_home(home) / "logs"


def airflow_service_folder(home: Path) -> Path:
    """Airflow as a service on this home: its deployment, secrets, process records and logs."""
    return airflow_home(home) / "service"


def airflow_service_secrets_file(home: Path) -> Path:
    """The service's generated secrets (JWT secret, fernet key, API secret key): owner-only."""
    return airflow_service_folder(home) / "secrets.json"


def feeds_folder(home: Path) -> Path:
    """The demo's department sources (drops, databases, registers) its feed configs read."""
    return home / "feeds"


def demo_folder(home: Path) -> Path:
    """The demo's stamps (a step done once per home) and its departments' credentials."""
    return home / "demo"


def demo_secrets_file(home: Path) -> Path:
    """The credentials the demo's departments use: owner-only."""
    return demo_folder(home) / "secrets.json"


# the folders only a civicnet home has (a folder holding none of them is never re-moded as a home)
HOME_FOLDERS = tuple(folder(Path()).as_posix()
                     for folder in (nodes_folder, landing_folder, outbox_folder, staging_folder))
# the files that stay owner-only when a share group may read the home (relative to the home)
SECRET_FILES = tuple(file(Path()).as_posix()
                     for file in (senders_file, demo_secrets_file, airflow_service_secrets_file))
