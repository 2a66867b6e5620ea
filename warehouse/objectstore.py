"""Object storage through fsspec URLs (`s3://bucket/prefix`, or any fsspec protocol): where server mode
keeps landing and published releases (DESIGN.md, Modes).

An `ObjectStore` is a URL plus the fsspec storage options that reach it (endpoint, credentials). The
options come from the standard places, which the caller resolves: the AWS variables botocore reads
itself (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_DEFAULT_REGION), or an Airflow
connection (civicnet.pipeline.storage). Credentials are never in the URL (`store_of` refuses a URL
with a user or password: URLs end up in messages and logs) and never in `repr` or a message.

Every byte moves as a stream: uploads in parts of `PART_BYTES` (S3's multipart upload), downloads
a chunk at a time, hashes as they read. Nothing holds a whole file in Python.

A store that cannot be reached fails fast (one retry, short connect timeout) with
`ObjectStoreUnavailableError` (transient: Airflow retries the task); one that refuses the request
(credentials, no such bucket) with `ObjectStoreRefusedError` (terminal: a person fixes the
setting). Both name the URL and the fix.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from schemas.errors import TerminalError, TransientError

log = logging.getLogger(__name__)
T = TypeVar("T")

PART_BYTES = 8 << 20  # S3's smallest part is 5 MiB; a file below two parts is sent in one request
SHA256_KEY = "sha256"  # the object metadata that names a mirrored file's content
SIDECAR = ".sha256"  # where a store without object metadata (file://, memory://) keeps it
CONNECT_TIMEOUT_S = 5
# botocore's connect timeout and retries (and s3fs's own, below): an unreachable store fails in seconds.
# No listings cache: another process (the gateway, another worker) lands batches meanwhile, and a
# long-lived process (a Celery worker, the gateway) must see them at the next listing.
S3_FAST = {"config_kwargs": {"connect_timeout": CONNECT_TIMEOUT_S, "retries": {"max_attempts": 2}},
           "use_listings_cache": False}


class ObjectStoreUnavailableError(TransientError):
    """The object store did not answer (down, unreachable, wrong endpoint)."""


class ObjectStoreRefusedError(TerminalError):
    """The object store answered but refused: credentials, no such bucket, no permission, or a URL
    that carries credentials."""


@dataclass(frozen=True)
class ObjectStore:
    """Where objects live: an fsspec URL (without credentials) and the storage options that reach it."""

    url: str
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)  # holds the credentials

    def key(self, *parts: str) -> str:
        """The URL of an object below this store's root."""
        return "/".join([self.url.rstrip("/"), *parts])


def store_of(url: str, options: Mapping[str, Any] | None = None) -> ObjectStore:
    """An ObjectStore for `url`; refused if the URL names a user or password (credentials go in the
    AWS variables or an Airflow connection, never in a URL that a message may show)."""
    parts = urlsplit(url)
    if not parts.scheme or not (parts.netloc or parts.path.strip("/")):
        raise ObjectStoreRefusedError(f"{url!r} is not an object store URL; give one such as s3://bucket/prefix")
    if parts.username is not None or parts.password is not None:
        shown = parts._replace(netloc=parts.hostname or "").geturl()
        raise ObjectStoreRefusedError(
            f"the object store URL {shown} carries credentials; remove them from the URL and set AWS_ACCESS_KEY_ID "
            "and AWS_SECRET_ACCESS_KEY, or name an Airflow connection in CIVICNET_OBJECT_STORE_CONN_ID")
    return ObjectStore(url.rstrip("/"), dict(options or {}))


def _filesystem(store: ObjectStore) -> tuple[Any, str]:
    """The fsspec filesystem and the root path of a store (s3 with fast failure unless told otherwise)."""
    import fsspec

    protocol = urlsplit(store.url).scheme
    options = dict(store.options)
    if protocol in ("s3", "s3a"):
        options = S3_FAST | options
    fs, root = fsspec.core.url_to_fs(store.url, **options)
    if protocol in ("s3", "s3a"):
        fs.retries = 2  # s3fs retries some errors 5 times with backoff by default
    return fs, root


def _path(store: ObjectStore, fs: Any, url: str) -> str:
    return str(fs._strip_protocol(url))


def guarded(store: ObjectStore, action: str, call: Callable[[], T]) -> T:
    """`call()` with the store's failures said as civicnet errors naming the store and the fix.
    FileNotFoundError of an object passes through (callers decide what a missing object means)."""
    try:
        return call()
    except (ObjectStoreUnavailableError, ObjectStoreRefusedError, FileNotFoundError) as err:
        if isinstance(err, FileNotFoundError) and "bucket" in str(err).lower():
            raise ObjectStoreRefusedError(
                f"object store {store.url}: the bucket does not exist ({action}); create it, or fix the URL") from err
        raise
    except PermissionError as err:
        raise ObjectStoreRefusedError(
            f"object store {store.url} refused to {action}: the credentials are refused or lack permission; fix "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the Airflow connection in CIVICNET_OBJECT_STORE_CONN_ID"
        ) from err
    except Exception as err:  # botocore/aiohttp connection errors share no base class with OSError
        if not _is_connection_error(err):
            raise
        raise ObjectStoreUnavailableError(
            f"object store {store.url} cannot be reached to {action} ({type(err).__name__}); check that it is "
            "running and that the endpoint (AWS_ENDPOINT_URL or the connection's endpoint_url) is right") from err


def _is_connection_error(err: BaseException) -> bool:
    names = {cls.__name__ for cls in type(err).__mro__}
    return bool(names & {"EndpointConnectionError", "ConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                         "ClientConnectorError", "ServerDisconnectedError", "TimeoutError", "ConnectionRefusedError",
                         "FSTimeoutError", "HTTPClientError"})


def exists(store: ObjectStore, url: str) -> bool:
    """Whether an object is there."""
    fs, _ = _filesystem(store)
    return bool(guarded(store, f"look for {url}", lambda: fs.exists(_path(store, fs, url))))


def read_text(store: ObjectStore, url: str) -> str:
    """A small object (a manifest, a cursor) as text; FileNotFoundError if it is not there."""
    fs, _ = _filesystem(store)
    data: bytes = guarded(store, f"read {url}", lambda: fs.cat_file(_path(store, fs, url)))
    return data.decode("utf-8")


def read_texts(store: ObjectStore, urls: list[str]) -> list[str]:
    """Several small objects at once (fsspec fetches them concurrently)."""
    if not urls:
        return []
    fs, _ = _filesystem(store)
    paths = [_path(store, fs, u) for u in urls]
    found: dict[str, bytes] = guarded(store, f"read {len(urls)} objects", lambda: fs.cat(paths))
    return [found[p].decode("utf-8") for p in paths]


def write_text(store: ObjectStore, url: str, text: str) -> None:
    """A small object written in one request: readers see the old object or the new one, whole."""
    fs, _ = _filesystem(store)
    guarded(store, f"write {url}", lambda: fs.pipe_file(_path(store, fs, url), text.encode("utf-8")))


def glob(store: ObjectStore, pattern: str) -> list[str]:
    """The URLs of the objects matching a glob below the store."""
    fs, _ = _filesystem(store)
    protocol = urlsplit(store.url).scheme
    found: list[str] = guarded(store, f"list {pattern}", lambda: fs.glob(_path(store, fs, pattern)))
    if not found and protocol in ("s3", "s3a"):
        _require_bucket(store, fs)  # S3 lists a missing bucket as empty: say so instead
    return [f"{protocol}://{p}" if protocol not in ("file", "") else p for p in sorted(found)]


def _require_bucket(store: ObjectStore, fs: Any) -> None:
    bucket = urlsplit(store.url).netloc
    try:
        guarded(store, f"find the bucket {bucket}", lambda: fs.info(bucket, refresh=True))
    except FileNotFoundError as err:
        raise ObjectStoreRefusedError(f"object store {store.url}: the bucket {bucket!r} does not exist; create it "
                                      "(the compose file's minio-init does), or fix the URL") from err


def upload(store: ObjectStore, local: Path, url: str, metadata: Mapping[str, str] | None = None) -> None:
    """Send a local file to `url` a part at a time (never whole in memory); `metadata` as the object's
    user metadata on S3, or a `.sha256` sidecar object elsewhere."""
    fs, _ = _filesystem(store)
    path = _path(store, fs, url)
    s3 = urlsplit(store.url).scheme in ("s3", "s3a")
    extra: dict[str, Any] = {"chunksize": PART_BYTES} if s3 else {}
    if s3 and metadata:
        extra["Metadata"] = dict(metadata)
    guarded(store, f"write {url}", lambda: fs.put_file(str(local), path, **extra))
    if not s3 and metadata and SHA256_KEY in metadata:
        guarded(store, f"write {url}{SIDECAR}", lambda: fs.pipe_file(path + SIDECAR, metadata[SHA256_KEY].encode()))


def download(store: ObjectStore, url: str, local: Path) -> Path:
    """Fetch an object into a local file, streamed a chunk at a time; FileNotFoundError if absent."""
    fs, _ = _filesystem(store)
    path = _path(store, fs, url)
    guarded(store, f"read {url}", lambda: fs.get_file(path, str(local)))
    return local


def remote_sha256(store: ObjectStore, url: str) -> str | None:
    """The sha256 a mirrored object was uploaded with (None if the object or its record is missing)."""
    fs, _ = _filesystem(store)
    path = _path(store, fs, url)
    try:
        if urlsplit(store.url).scheme in ("s3", "s3a"):
            meta: Mapping[str, str] = guarded(store, f"read {url}", lambda: fs.metadata(path, refresh=True))
            return meta.get(SHA256_KEY)
        data: bytes = guarded(store, f"read {url}{SIDECAR}", lambda: fs.cat_file(path + SIDECAR))
        return data.decode("ascii").strip()
    except FileNotFoundError:
        return None


def file_sha256(path: Path) -> str:
    """The sha256 of a local file, read a chunk at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(PART_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def mirror(local_path: Path, store: ObjectStore, url: str) -> bool:
    """Upload `local_path` to `url` with its sha256 in the object's metadata, only if the object is not
    already that content: True if it was uploaded, False if it was there (a second run sends nothing)."""
    digest = file_sha256(local_path)
    if remote_sha256(store, url) == digest:
        return False
    upload(store, local_path, url, {SHA256_KEY: digest})
    log.info("mirrored %s to %s (sha256 %s)", local_path.name, url, digest[:12])
    return True


@dataclass(frozen=True)
class Mirrored:
    """What was last uploaded to one URL: the file's size and time then (so an unchanged file is not
    hashed again), its sha256, and the ETag the store gave the object (so a listing tells that the
    object is still that upload without asking for each object's metadata)."""

    size: int
    mtime_ns: int
    sha256: str
    etag: str | None

    def to_dict(self) -> dict[str, Any]:
        """The record's JSON form."""
        return {"size": self.size, "mtime_ns": self.mtime_ns, "sha256": self.sha256, "etag": self.etag}


def etags(store: ObjectStore, prefix: str) -> dict[str, str | None]:
    """Every object below `prefix` with its ETag (None where the store has none), in one listing
    (S3: a request per 1,000 objects)."""
    fs, _ = _filesystem(store)
    protocol = urlsplit(store.url).scheme
    try:
        found: dict[str, dict[str, Any]] = guarded(store, f"list {prefix}",
                                                   lambda: fs.find(_path(store, fs, prefix), detail=True))
    except FileNotFoundError:
        return {}
    return {(f"{protocol}://{p}" if protocol not in ("file", "") else p): info.get("ETag")
            for p, info in found.items()}


def mirror_files(store: ObjectStore, files: list[tuple[Path, str]], record: Mapping[str, Mirrored],
                 listed: Mapping[str, str | None]) -> tuple[list[str], dict[str, Mirrored]]:
    """Mirror each (local file, URL) whose content the store does not hold yet: (the URLs uploaded, the new
    record). `record` is what earlier runs uploaded and `listed` the store's ETags now: a file of the size
    and time recorded is not hashed again, and an object whose ETag is the recorded one is not asked
    for its metadata; anything else is checked against the sha256 in the object's metadata."""
    sent, now, checked = [], {}, []
    for path, url in files:
        stat = path.stat()
        known = record.get(url)
        same_file = known is not None and (known.size, known.mtime_ns) == (stat.st_size, stat.st_mtime_ns)
        digest = known.sha256 if known is not None and same_file else file_sha256(path)
        if known is not None and known.sha256 == digest and known.etag is not None and listed.get(url) == known.etag:
            now[url] = known if same_file else Mirrored(stat.st_size, stat.st_mtime_ns, digest, known.etag)
            continue
        # an object the listing does not show is sent without asking for its metadata first
        if url not in listed or remote_sha256(store, url) != digest:
            upload(store, path, url, {SHA256_KEY: digest})
            sent.append(url)
        now[url] = Mirrored(stat.st_size, stat.st_mtime_ns, digest, None)
        checked.append(url)
    if checked:  # the ETags of what was sent or checked, from one more listing (not a request each)
        prefix = _common_prefix(checked)
        after = etags(store, prefix)
        now |= {url: replace(now[url], etag=after.get(url)) for url in checked}
    return sent, now


def _common_prefix(urls: list[str]) -> str:
    """The longest folder all the URLs are under."""
    first, last = min(urls), max(urls)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n].rsplit("/", 1)[0]


@contextmanager
def fetched(store: ObjectStore, url: str, local: Path) -> Iterator[Path]:
    """An object fetched into `local` for the block's length (for readers, such as DuckDB here, that
    read local files only), removed after."""
    try:
        yield download(store, url, local)
    finally:
        local.unlink(missing_ok=True)
