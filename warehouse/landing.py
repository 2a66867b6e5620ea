"""Landing: raw payloads stored immutably, content-addressed, each with a manifest.

`<home>/landing/<dataset>/<batch_id>/` holds `payload.<ext>` (the bytes exactly as received),
`raw.parquet` (the decoded text table, so later stages never decode twice) and
`manifest.json`. The batch id is the sha256 of the payload: the same content twice is the
same batch, and landing it again is a no-op.

A pushed file (`land_push`) also leaves a receipt, `<home>/gateway/receipts/<batch_id>.json`:
landing's record of who sent what, by batch id alone (the gateway's status URL names no dataset).

Server mode lands in object storage instead (`use_landing(home, store)`: an fsspec URL such as
`s3://bucket/landing`, set by CIVICNET_LANDING_URL or the Airflow variable `civicnet_landing_url`):
`<url>/<dataset>/<batch_id>/` holds the same three objects and `<url>/<dataset>/_state/<feed>.json`
the cursors. S3 has no rename, so a batch is made visible whole by order: its payload and raw table
are decoded in a private local folder, uploaded (streamed, a part at a time), and `manifest.json`
is written last, in one request. **A batch without its manifest is not landed**: every reader lists
and opens batches by their manifest only, and landing the content again replaces the data objects a
killed run left. The manifest is the commit point, so no temporary key and copy are needed (a copy
would write every byte twice). DuckDB here cannot read s3:// (no httpfs), so the check reads the
raw table through `local_raw`, which fetches it into the check's local folder first.

The place is registered per home for the process (the CLI and the gateway from their Settings, each
DAG task from its Airflow variables): status, reports, the gateway and the ingest steps all read
landing by home, and a home without a registered store lands in `<home>/landing` exactly as before.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.errors import TerminalError, TransientError
from schemas.homefiles import make_folder, place_folder, temporary_folder, write_atomic
from schemas.layout import (
    dataset_landing_folder,
    feed_state_file,
    landed_batch_folder,
    landing_folder,
    receipt_file,
)
from schemas.media import EXTENSIONS
from warehouse import objectstore
from warehouse.objectstore import ObjectStore


class UnknownBatchError(TerminalError):
    """No landed batch has this id."""


class PayloadChangedError(TransientError):
    """A payload's bytes changed between the pull that hashed them and their landing (a file rewritten
    meanwhile): nothing is landed, and the next pull takes the file as it is then."""


_COPY_CHUNK = 8 << 20
# decode(payload file, raw.parquet to write) → (rows, why the payload is unreadable or None)
Decoder = Callable[[Path, Path], tuple[int, str | None]]


@dataclass(frozen=True)
class Manifest:
    """What is known of a landed batch when it arrives."""

    batch_id: str
    feed: str
    department: str
    dataset: str
    source_name: str
    media_type: str
    encoding: str | None
    byte_size: int
    row_count: int
    received_at: dt.datetime  # aware, UTC
    cursor: Mapping[str, Any]
    # pushed batches: who sent it, and the division its rows must lie in (a community's own)
    sender: str | None = None
    scope: str | None = None
    # a file that could not be read (empty, cut off, not its format): why, in a sentence naming it;
    # it is landed with no rows so its check refuses it alone and its sender gets a report
    unreadable: str | None = None

    def to_json(self) -> str:
        """manifest.json: the fields, the time as ISO 8601 with its offset."""
        return json.dumps(asdict(self) | {"received_at": _iso(self.received_at)}, ensure_ascii=False, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """A manifest read back (a time written without an offset is UTC, as every civicnet wrote it)."""
        fields = json.loads(text)
        return cls(**fields | {"received_at": _aware(fields["received_at"])})


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def _aware(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


MANIFEST = "manifest.json"  # written last: a batch folder holding it is landed whole


def batch_id_of(data: bytes) -> str:
    """The id of a batch: the sha256 hex of its payload, so the same content is the same batch."""
    return hashlib.sha256(data).hexdigest()


def batch_dir(home: Path, dataset: str, batch_id: str) -> Path:
    """Where a batch lives (in the home; with an object store, where it is decoded before upload)."""
    return landed_batch_folder(home, dataset, batch_id)


_stores: dict[Path, ObjectStore] = {}


def use_landing(home: Path, store: ObjectStore | None) -> None:
    """Land `home`'s batches in `store` from now on in this process (None: in `<home>/landing`)."""
    if store is None:
        _stores.pop(home.resolve(), None)
    else:
        _stores[home.resolve()] = store


def landing_store(home: Path) -> ObjectStore | None:
    """The object store `home` lands in, or None for its own landing folder."""
    return _stores.get(home.resolve()) if _stores else None


def landing_place(home: Path) -> str:
    """Where `home`'s batches land, as an operator reads it: the store's URL or the local folder."""
    store = landing_store(home)
    return store.url if store is not None else str(landing_folder(home))


def _batch_url(store: ObjectStore, dataset: str, batch_id: str, name: str) -> str:
    return store.key(dataset, batch_id, name)


def land(home: Path, manifest: Manifest, data: bytes, table: pa.Table) -> bool:
    """Store a payload and its decoded table; False if the batch was already landed."""
    def decode(_payload: Path, raw: Path) -> tuple[int, str | None]:
        pq.write_table(table, raw, compression="zstd")
        return manifest.row_count, manifest.unreadable
    return land_stream(home, manifest, lambda: io.BytesIO(data), decode)  # BytesIO shares the bytes


def land_stream(home: Path, manifest: Manifest, opener: Callable[[], IO[bytes]], decode: Decoder) -> bool:
    """Store a payload read as a stream from `opener()` (hashed as it is copied: it must be the content
    `manifest.batch_id` names, else PayloadChangedError) and the raw table `decode` writes from the
    landed copy; the manifest gets the row count and unreadable reason `decode` returns. False if the
    batch was already landed (nothing is read then)."""
    store = landing_store(home)
    if store is not None:
        return _land_in_store(store, home, manifest, opener, decode)
    final = batch_dir(home, manifest.dataset, manifest.batch_id)
    if (final / MANIFEST).exists():
        return False
    tmp = temporary_folder(final)  # this call's own: two threads or processes may land the same content at once
    try:
        payload = tmp / f"payload.{EXTENSIONS.get(manifest.media_type, 'bin')}"
        with opener() as source, payload.open("wb") as target:
            digest, size = _copy_hashing(source, target)
        if digest != manifest.batch_id:
            raise PayloadChangedError(f"{manifest.source_name} changed while it was being read (it is not the "
                                      "content the pull listed); it is taken again on the next pull")
        rows, unreadable = decode(payload, tmp / "raw.parquet")
        manifest = replace(manifest, byte_size=size, row_count=rows, unreadable=unreadable)
        (tmp / MANIFEST).write_text(manifest.to_json(), "utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # the payload as sent is personal data: private before it is visible as landed; a batch another
    # pull landed meanwhile is left to its readers, a half-landed one of a killed run replaced whole
    return place_folder(tmp, final, complete=MANIFEST)


def _land_in_store(store: ObjectStore, home: Path, manifest: Manifest, opener: Callable[[], IO[bytes]],
                   decode: Decoder) -> bool:
    """land_stream into an object store: decoded in a private local folder, then the data objects
    uploaded and the manifest written last (the batch is landed once its manifest is there)."""
    manifest_url = _batch_url(store, manifest.dataset, manifest.batch_id, MANIFEST)
    if objectstore.exists(store, manifest_url):
        return False
    tmp = temporary_folder(batch_dir(home, manifest.dataset, manifest.batch_id))
    try:
        payload = tmp / f"payload.{EXTENSIONS.get(manifest.media_type, 'bin')}"
        with opener() as source, payload.open("wb") as target:
            digest, size = _copy_hashing(source, target)
        if digest != manifest.batch_id:
            raise PayloadChangedError(f"{manifest.source_name} changed while it was being read (it is not the "
                                      "content the pull listed); it is taken again on the next pull")
        rows, unreadable = decode(payload, tmp / "raw.parquet")
        manifest = replace(manifest, byte_size=size, row_count=rows, unreadable=unreadable)
        if objectstore.exists(store, manifest_url):  # another pull landed it meanwhile: left to its readers
            return False
        for part in (payload, tmp / "raw.parquet"):
            objectstore.upload(store, part, _batch_url(store, manifest.dataset, manifest.batch_id, part.name))
        objectstore.write_text(store, manifest_url, manifest.to_json())  # last: now the batch is landed
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _copy_hashing(source: IO[bytes], target: IO[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(_COPY_CHUNK):
        digest.update(chunk)
        target.write(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


ROW_GROUP_ROWS = 128 * 1024  # rows per row group of raw.parquet: small batches are put together


def write_raw(path: Path, batches: Iterable[pa.RecordBatch]) -> int:
    """raw.parquet from record batches of one schema, written a row group at a time as they come:
    the decoded rows never sit in memory whole. Returns the row count."""
    writer: pq.ParquetWriter | None = None
    rows, pending, held = 0, [], 0
    try:
        for batch in batches:
            if writer is None:
                writer = pq.ParquetWriter(path, batch.schema, compression="zstd")
            pending.append(batch)
            held += batch.num_rows
            rows += batch.num_rows
            if held >= ROW_GROUP_ROWS:
                writer.write_table(pa.Table.from_batches(pending), row_group_size=held)
                pending, held = [], 0
        if writer is None:
            raise ValueError(f"no batch to write to {path}: a decoder yields at least one, empty if need be")
        if pending:
            writer.write_table(pa.Table.from_batches(pending), row_group_size=max(held, 1))
    finally:
        if writer is not None:
            writer.close()
    return rows


def read_manifest(home: Path, dataset: str, batch_id: str) -> Manifest:
    """The manifest of a landed batch."""
    store = landing_store(home)
    if store is not None:
        url = _batch_url(store, dataset, batch_id, MANIFEST)
        try:
            return Manifest.from_json(objectstore.read_text(store, url))
        except FileNotFoundError:
            raise UnknownBatchError(f"batch {batch_id} of {dataset!r} is not in {store.key(dataset)} (no "
                                    f"{MANIFEST}: not landed, or landed only in part); pull the feed again or check "
                                    "the id") from None
    path = batch_dir(home, dataset, batch_id) / MANIFEST
    if not path.exists():
        raise UnknownBatchError(f"batch {batch_id} of {dataset!r} is not in {path.parent.parent}; "
                                "pull the feed again or check the id")
    return Manifest.from_json(path.read_text("utf-8"))


def raw_path(home: Path, dataset: str, batch_id: str) -> Path:
    """The decoded text table of a landed batch, as Parquet (in the home's landing folder: with an
    object store, read it through `local_raw`)."""
    path = batch_dir(home, dataset, batch_id) / "raw.parquet"
    if not path.exists():
        raise UnknownBatchError(f"batch {batch_id} of {dataset!r} has no {path}; pull the feed again")
    return path


@contextmanager
def local_raw(home: Path, dataset: str, batch_id: str, scratch: Path) -> Iterator[Path]:
    """The raw table of a landed batch as a local file for the block's length: in the landing folder
    as it is, or fetched from the object store into `scratch` (streamed) and removed after."""
    store = landing_store(home)
    if store is None:
        yield raw_path(home, dataset, batch_id)
        return
    read_manifest(home, dataset, batch_id)  # a batch without its manifest is not landed: not read
    url = _batch_url(store, dataset, batch_id, "raw.parquet")
    try:
        with objectstore.fetched(store, url, scratch / f".raw-{batch_id}.parquet") as path:
            yield path
    except FileNotFoundError:
        raise UnknownBatchError(f"batch {batch_id} of {dataset!r} has no {url}; pull the feed again") from None


def landed_batches(home: Path, dataset: str, feed: str | None = None) -> list[Manifest]:
    """Every landed batch of a dataset (optionally one feed's), in the order received."""
    store = landing_store(home)
    if store is not None:  # only batches with their manifest: the others are not landed
        found = objectstore.glob(store, store.key(dataset, "*", MANIFEST))
        manifests = [Manifest.from_json(t) for t in objectstore.read_texts(store, found)]
        chosen = [m for m in manifests if feed is None or m.feed == feed]
        return sorted(chosen, key=lambda m: (m.received_at, m.batch_id))
    folder = dataset_landing_folder(home, dataset)
    if not folder.exists():
        return []
    manifests = [Manifest.from_json(p.read_text("utf-8")) for p in folder.glob(f"*/{MANIFEST}")
                 if not p.parent.name.startswith(".")]  # not a batch another pull is still writing
    chosen = [m for m in manifests if feed is None or m.feed == feed]
    return sorted(chosen, key=lambda m: (m.received_at, m.batch_id))


def _state_path(home: Path, dataset: str, feed: str) -> Path:
    return feed_state_file(home, dataset, feed)


def feed_state(home: Path, dataset: str, feed: str) -> Mapping[str, Any]:
    """The connector cursor saved after the last payload was landed (empty if none)."""
    store = landing_store(home)
    if store is not None:
        try:
            saved: Mapping[str, Any] = json.loads(objectstore.read_text(store, store.key(dataset, "_state",
                                                                                         f"{feed}.json")))
        except FileNotFoundError:
            return {}
        return saved
    path = _state_path(home, dataset, feed)
    state: Mapping[str, Any] = json.loads(path.read_text("utf-8")) if path.exists() else {}
    return state


def save_feed_state(home: Path, dataset: str, feed: str, cursor: Mapping[str, Any]) -> None:
    """Save the cursor, only ever after the payload it covers has landed: a crash in between
    means the payload is fetched again and lands as a no-op, never that it is skipped."""
    store = landing_store(home)
    if store is not None:
        objectstore.write_text(store, store.key(dataset, "_state", f"{feed}.json"),
                               json.dumps(dict(cursor), ensure_ascii=False))
        return
    path = _state_path(home, dataset, feed)
    write_atomic(make_folder(path.parent) / path.name, json.dumps(dict(cursor), ensure_ascii=False))


def utc_now() -> dt.datetime:
    """System time of arrival, aware, UTC (the one place a receipt time is taken)."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class PushedFile:
    """What is known of a pushed file besides its bytes: the push feed it fits, and its sender."""

    feed: str
    dataset: str
    department: str  # the sender's (a community's is `community:<code>`)
    sender: str
    scope: str | None  # the community a community sender may write, None for the owner department
    source_name: str
    media_type: str
    encoding: str | None


def receipt_path(home: Path, batch_id: str) -> Path:
    """Where the receipt of a pushed batch lives."""
    return receipt_file(home, batch_id)


def read_receipt(home: Path, batch_id: str) -> dict[str, Any] | None:
    """The receipt of a pushed batch (batch_id, dataset, sender, file, rows, received_at), or None."""
    path = receipt_path(home, batch_id)
    found: dict[str, Any] | None = json.loads(path.read_text("utf-8")) if path.exists() else None
    return found


def land_push(home: Path, pushed: PushedFile, data: bytes, table: pa.Table) -> tuple[dict[str, Any], bool]:
    """Land a pushed file and write its receipt: (the receipt, True), or (the first receipt, False) if
    this content was received before. The caller holds one lock around it per process, so two
    bodies alike do not both write a receipt; the receipt is written last, after the batch landed."""
    batch_id = batch_id_of(data)
    first = read_receipt(home, batch_id)
    if first is not None:
        return first, False
    manifest = Manifest(
        batch_id=batch_id, feed=pushed.feed, department=pushed.department, dataset=pushed.dataset,
        source_name=pushed.source_name, media_type=pushed.media_type, encoding=pushed.encoding,
        byte_size=len(data), row_count=table.num_rows, received_at=utc_now(), cursor={}, sender=pushed.sender,
        scope=pushed.scope)
    land(home, manifest, data, table)  # already landed (a crash before the receipt): the receipt is owed
    receipt = {"batch_id": batch_id, "dataset": pushed.dataset, "sender": pushed.sender,
               "file": pushed.source_name, "rows": table.num_rows, "received_at": _iso(manifest.received_at)}
    path = receipt_path(home, batch_id)
    write_atomic(make_folder(path.parent) / path.name, json.dumps(receipt, ensure_ascii=False, indent=1))
    return receipt, True
