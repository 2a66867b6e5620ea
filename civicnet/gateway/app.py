"""The push gateway: departments and community work stations send files; the gateway lands them.

`POST /v1/datasets/{dataset}/batches` takes one file as the request body and, if the sender may
write that dataset and the file fits the dataset's push feed, lands it immutably (its sha256 is
the batch id, so a resent file is recognised and lands nothing) and hands it to a `Trigger`
that runs the ingest. `GET /v1/batches/{batch_id}` answers what became of a batch, with every
quarantined row and its reasons; once the batch is decided, `GET /v1/batches/{batch_id}/report`
returns its rejection report (quality/rejection.py: JSON, `?format=csv` or `?format=text`), the
report a sender fixes its data from.

Checks run cheapest first and before the body is read where they can (auth, dataset, rights,
declared size), so a refused upload costs the gateway little; the body is then parsed within the
push limits (connectors.parse.PUSH_LIMITS: rows, columns or JSON keys, inflated size), stopping at
the first one it passes (413 for rows or size, 422 for columns). Tokens and the Authorization
header are never logged; every refusal is JSON `{"error": "<what to do>"}`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from civicnet import context
from connectors.feeds import Feed, PushSource, load_feeds
from connectors.parse import (
    CSV,
    MEDIA_TYPES,
    PUSH_LIMITS,
    ParseLimits,
    PayloadTooLargeError,
    UnreadablePayloadError,
    detect_encoding,
    read_payload,
    text_encoding,
)
from connectors.push.senders import Sender, authenticate
from quality.conform import check_columns
from quality.rejection import RejectionReport, build_report, to_csv, to_text
from schemas.contract import Contract, load_contracts
from schemas.errors import TerminalError
from schemas.homefiles import make_folder, write_atomic
from schemas.i18n import DEFAULT_LANG, UnknownLanguageError, negotiate_lang, parse_lang
from warehouse import landing
from warehouse.merge import BatchOutcome, ledger_entry
from warehouse.node import NodeLockedError, node_path

log = logging.getLogger(__name__)
MAX_NAME = 200
REPORT_ROWS = 1000  # quarantined rows listed in a status answer; the counts always cover all
_BATCH_ID = re.compile(r"^[0-9a-f]{64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
REPORT_FORMATS = ("json", "csv", "text")
T = TypeVar("T")


class GatewayError(Exception):
    """A request the gateway refuses: an HTTP status and a sentence the sender can act on."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class Trigger(Protocol):
    """What runs after a batch lands (ingest, then network sync)."""

    # held while a run writes the city node: the gateway reads the ledger only when it can take it
    node_lock: threading.Lock

    def __call__(self, feed: str, batch_id: str) -> None:
        """Schedule the ingest of a landed batch; must return at once."""

    def last_error(self, batch_id: str) -> str | None:
        """Why the last run that took this batch failed, if it did."""


def read_upload(data: bytes, media_type: str, encoding: str | None, name: str,
                limits: ParseLimits = PUSH_LIMITS) -> pa.Table:
    """Decode an uploaded file like `read_payload`, within the push limits (connectors.parse.PUSH_LIMITS),
    with every unreadable file as UnreadablePayloadError."""
    try:
        return read_payload(data, media_type, encoding, name, limits)
    except zipfile.BadZipFile:  # openpyxl lets this through for bytes that are not a zip archive at all
        raise UnreadablePayloadError(f"{name}: not a readable XLSX workbook (not a zip archive); "
                                     "save it again as .xlsx") from None


def push_feeds(feeds: dict[str, Feed] | None = None) -> dict[str, Feed]:
    """The push feed of each dataset open for push, by dataset."""
    chosen = feeds if feeds is not None else load_feeds()
    return {f.dataset: f for f in sorted(chosen.values(), key=lambda f: f.slug) if isinstance(f.connector, PushSource)}


def check_file_name(raw: str | None) -> str:
    """The sender's file name from `X-Filename` (percent-encoded UTF-8 allowed), if it is a plain name."""
    if raw is None or not raw.strip():
        raise GatewayError(422, "header X-Filename is missing: send the file's name (percent-encoded if not ASCII)")
    try:
        name = unquote(raw.encode("latin-1").decode("utf-8"), errors="strict")
    except (UnicodeDecodeError, UnicodeEncodeError):
        name = None
    if (name is None or not name or len(name) > MAX_NAME or name in (".", "..") or ".." in name
            or "/" in name or "\\" in name or _CONTROL.search(name)):
        shown = raw[:MAX_NAME].encode("unicode_escape").decode("ascii")
        raise GatewayError(422, f"file name {shown!r} must be a plain name: at most {MAX_NAME} characters, "
                                "no '/', '\\', '..' or control characters (send the base name only)")
    return name


def media_type_of(headers: Headers) -> tuple[str, str | None]:
    """The media type and text encoding of the body (X-Encoding, else the charset parameter)."""
    parts = [p.strip() for p in headers.get("content-type", "").split(";")]
    media_type = parts[0].lower()
    if media_type not in MEDIA_TYPES.values():
        raise GatewayError(422, f"Content-Type {media_type!r} is not one the gateway reads; send one of "
                                f"{sorted(set(MEDIA_TYPES.values()))} (by file extension: {MEDIA_TYPES})")
    charset = next((p.split("=", 1)[1].strip('"') for p in parts[1:] if p.lower().startswith("charset=")), None)
    encoding = headers.get("x-encoding") or charset
    if encoding is not None:
        try:
            text_encoding(encoding)  # unknown, or a codec that is not text (rot13, zlib_codec, base64): 422
        except UnreadablePayloadError as err:
            raise GatewayError(422, f"header X-Encoding (or charset): {err}") from None
    return media_type, encoding


def _json_atomic(path: Path, content: dict[str, Any]) -> None:
    write_atomic(make_folder(path.parent) / path.name, json.dumps(content, ensure_ascii=False, indent=1))


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it declares or reaches more than `limit` bytes."""
    declared = request.headers.get("content-length")
    too_big = GatewayError(413, f"the file is larger than this dataset's limit of {limit} bytes; "
                                "split it into smaller files and send each")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


class _Gateway:
    """The routes' state: the home, the push feeds and contracts (read once), the trigger."""

    def __init__(self, home: Path, trigger: Trigger, feeds: dict[str, Feed] | None = None,
                 limits: ParseLimits = PUSH_LIMITS) -> None:
        self.home = home
        self.limits = limits
        self.trigger = trigger
        self.feeds = push_feeds(feeds)
        self.contracts: dict[str, Contract] = load_contracts()
        self.landing_lock = threading.Lock()  # one landing of a given body at a time (replays race)

    def receipt_path(self, batch_id: str) -> Path:
        return self.home / "gateway" / "receipts" / f"{batch_id}.json"

    def receipt(self, batch_id: str) -> dict[str, Any] | None:
        path = self.receipt_path(batch_id)
        found: dict[str, Any] | None = json.loads(path.read_text("utf-8")) if path.exists() else None
        return found

    def sender(self, request: Request) -> Sender:
        """The authenticated sender, or 401."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GatewayError(401, "send your sender token as 'Authorization: Bearer <token>'",
                               {"WWW-Authenticate": "Bearer"})
        sender = authenticate(self.home, token.strip())
        if sender is None:
            raise GatewayError(401, "the token is not valid (mistyped or revoked); ask the gateway's operator "
                                    "for a new one", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return sender

    def writable(self, sender: Sender, dataset: str) -> Feed:
        """The dataset's push feed, if the sender may write the dataset (else 422 or 403)."""
        if dataset not in self.feeds:
            raise GatewayError(422, f"dataset {dataset!r} is not open for push; datasets open for push: "
                                    f"{sorted(self.feeds)}")
        feed, owner = self.feeds[dataset], self.contracts[dataset].owner
        assert isinstance(feed.connector, PushSource)
        allowed = feed.connector.senders
        if sender.kind == "department" and sender.department == owner and "owner" in allowed:
            return feed
        if sender.kind == "community" and "community" in allowed:
            return feed
        who = " and ".join([*(["its owner department"] if "owner" in allowed else []),
                            *(["community work stations (their own rows)"] if "community" in allowed else [])])
        raise GatewayError(403, f"dataset {dataset!r} is owned by department {owner!r}: only {who} may push it, "
                                f"and sender {sender.sender_id!r} ({sender.department}) is not one; send the file "
                                f"to {owner!r} instead")

    async def receive(self, dataset: str, request: Request) -> JSONResponse:
        """POST /v1/datasets/{dataset}/batches: land one file."""
        sender = self.sender(request)
        feed = self.writable(sender, dataset)
        name = check_file_name(request.headers.get("x-filename"))
        media_type, encoding = media_type_of(request.headers)
        assert isinstance(feed.connector, PushSource)
        data = await _read_body(request, feed.connector.max_bytes)
        receipt, fresh = await run_in_threadpool(self.accept, sender, feed, name, media_type, encoding, data)
        if fresh:
            self.trigger(feed.slug, receipt["batch_id"])
            return JSONResponse(receipt, status_code=202)
        return JSONResponse(receipt | {"replayed": True}, status_code=200)

    def accept(self, sender: Sender, feed: Feed, name: str, media_type: str, encoding: str | None,
               data: bytes) -> tuple[dict[str, Any], bool]:
        """Validate and land a body; (receipt, True) if new, (the first receipt, False) if a replay."""
        batch_id = hashlib.sha256(data).hexdigest()
        first = self.receipt(batch_id)
        if first is not None:
            return self.replayed(sender, feed, first), False
        try:
            table = read_upload(data, media_type, encoding, name, self.limits)
            check_columns(table.column_names, context.source_mapping(feed), self.contracts[feed.dataset])
        except PayloadTooLargeError as err:  # more rows or inflated bytes than one upload may hold
            raise GatewayError(413, str(err)) from None
        except TerminalError as err:  # unreadable, too many columns, or not the columns the feed maps
            raise GatewayError(422, str(err)) from None
        if table.num_rows == 0:
            raise GatewayError(422, f"{name} has a header but no data rows; send the rows")
        if media_type == CSV and encoding is None:
            encoding = detect_encoding(data)
        with self.landing_lock:
            first = self.receipt(batch_id)
            if first is not None:
                return self.replayed(sender, feed, first), False
            manifest = landing.Manifest(
                batch_id=batch_id, feed=feed.slug, department=sender.department, dataset=feed.dataset,
                source_name=name, media_type=media_type, encoding=encoding, byte_size=len(data),
                row_count=table.num_rows, received_at=landing.utc_now(), cursor={}, sender=sender.sender_id,
                scope=sender.division if sender.kind == "community" else None)
            landing.land(self.home, manifest, data, table)
            receipt = {"batch_id": batch_id, "dataset": feed.dataset, "sender": sender.sender_id, "file": name,
                       "rows": table.num_rows, "received_at": manifest.received_at,
                       "status_url": f"/v1/batches/{batch_id}"}
            _json_atomic(self.receipt_path(batch_id), receipt)
        log.info("landed batch %s of %s from sender %s (%s, %d rows)", batch_id, feed.dataset,
                 sender.sender_id, name, table.num_rows)
        return receipt, True

    def replayed(self, sender: Sender, feed: Feed, first: dict[str, Any]) -> dict[str, Any]:
        """The first receipt of a body sent again, if this sender may see it (else 409, revealing nothing)."""
        if first["dataset"] == feed.dataset and self.visible(sender, first):
            return first
        raise GatewayError(409, "a file with exactly this content was already received from another sender or "
                                "for another dataset; nothing was landed. Check that you sent the right file")

    def visible(self, sender: Sender, receipt: dict[str, Any]) -> bool:
        """A batch is visible to the sender who sent it and to senders of the same department."""
        manifest = landing.read_manifest(self.home, receipt["dataset"], receipt["batch_id"])
        return manifest.sender == sender.sender_id or manifest.department == sender.department

    def status(self, batch_id: str, request: Request) -> dict[str, Any]:
        """GET /v1/batches/{batch_id}: what became of a batch, with its quarantined rows."""
        sender = self.sender(request)
        receipt = self.receipt(batch_id) if _BATCH_ID.match(batch_id) else None
        if receipt is None or not self.visible(sender, receipt):
            raise GatewayError(404, f"no batch {batch_id!r} sent by you or your department; check the id in "
                                    "your receipt")
        return batch_status(self.home, receipt, self.trigger)

    def report(self, batch_id: str, request: Request, fmt: str = Query("json", alias="format"),
               lang: str | None = Query(None, max_length=40)) -> Response:
        """GET /v1/batches/{batch_id}/report: the rejection report of a decided batch (JSON, CSV or text),
        in zh-CN unless `?lang=en` or the Accept-Language header asks for English."""
        sender = self.sender(request)
        try:
            language = parse_lang(lang) if lang else negotiate_lang(request.headers.get("accept-language"))
        except UnknownLanguageError as err:
            raise GatewayError(422, str(err)) from None
        if fmt not in REPORT_FORMATS:
            raise GatewayError(422, f"format {fmt!r} is not one the gateway writes; ask for one of "
                                    f"{list(REPORT_FORMATS)} (json if left out)")
        receipt = self.receipt(batch_id) if _BATCH_ID.match(batch_id) else None
        if receipt is None or not self.visible(sender, receipt):
            raise GatewayError(404, f"no batch {batch_id!r} sent by you or your department; check the id in "
                                    "your receipt")
        report, busy = _city_read(self.home, self.trigger, lambda con: self.build(con, receipt, language))
        if report is None:
            state = "being processed" if busy else "not decided yet"
            raise GatewayError(404, f"batch {batch_id} is {state}: its report exists once it is applied or refused; "
                                    f"ask again when GET /v1/batches/{batch_id} says so")
        if fmt == "csv":
            return Response(to_csv(report), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{batch_id}.csv"'})
        if fmt == "text":
            return PlainTextResponse(to_text(report))
        return JSONResponse(report.to_dict())

    def build(self, con: duckdb.DuckDBPyConnection, receipt: dict[str, Any],
              lang: str = DEFAULT_LANG) -> RejectionReport | None:
        """The report of a batch from the open city node, or None if the node has not decided it."""
        if ledger_entry(con, "city", receipt["batch_id"]) is None:
            return None
        manifest = landing.read_manifest(self.home, receipt["dataset"], receipt["batch_id"])
        feed = self.feeds.get(manifest.dataset)
        mapping = context.source_mapping(feed) if feed is not None and feed.slug == manifest.feed else None
        return build_report(con, "city", manifest.batch_id, manifest, mapping, self.contracts.get(manifest.dataset),
                            lang=lang)


def _city_read(home: Path, trigger: Trigger, read: Callable[[duckdb.DuckDBPyConnection], T]) -> tuple[T | None, bool]:
    """(what `read` finds in the city node, whether the node was busy and could not be read)."""
    if not trigger.node_lock.acquire(blocking=False):
        return None, True
    try:
        if not node_path(home, context.city_code()).exists():
            return None, False
        try:
            con = context.open_city(home, read_only=True)
        except NodeLockedError:  # a merge in another process holds the file: DuckDB allows one writer
            return None, True
        try:
            return read(con), False
        finally:
            con.close()
    finally:
        trigger.node_lock.release()


Decision = tuple[BatchOutcome, list[dict[str, Any]]]


def _city_decision(home: Path, batch_id: str, trigger: Trigger) -> tuple[Decision | None, bool]:
    """((the city ledger row of a batch, its quarantined rows), whether the city node was busy and could
    not be read). The rows are read from the city, not staging: the merge may quarantine more
    (`key_owned_elsewhere`)."""
    def read(con: duckdb.DuckDBPyConnection) -> Decision | None:
        entry = ledger_entry(con, "city", batch_id)
        if entry is None:
            return None
        rows = con.execute(f"""SELECT line, reasons, raw FROM city._civicnet.quarantine WHERE batch_id = ?
                               ORDER BY line LIMIT {REPORT_ROWS}""", [batch_id]).fetchall()
        return entry, [{"line": line, "reasons": reasons, "raw": json.loads(raw) if raw else None}
                       for line, reasons, raw in rows]

    return _city_read(home, trigger, read)


def _quarantined_rows(stage: Path) -> list[dict[str, Any]]:
    path = stage / "quarantined.parquet"
    if not path.exists():
        return []
    rows = pq.read_table(path).slice(0, REPORT_ROWS).to_pylist()
    return [{"line": r["_line"], "reasons": r["reasons"], "raw": json.loads(r["raw"]) if r["raw"] else None}
            for r in rows]


def batch_status(home: Path, receipt: dict[str, Any], trigger: Trigger) -> dict[str, Any]:
    """A batch's state from staging (its check) and the city ledger (its decision)."""
    batch_id = receipt["batch_id"]
    stage = home / "staging" / batch_id
    check = json.loads((stage / "check.json").read_text("utf-8")) if (stage / "check.json").exists() else None
    decision, busy = _city_decision(home, batch_id, trigger)
    entry, rows = decision if decision is not None else (None, _quarantined_rows(stage))
    if entry is not None:
        state = entry.status
        counts = {k: getattr(entry, k) for k in ("received", "applied", "quarantined", "duplicates", "held")}
    else:
        state = "processing" if busy else "checked" if check else "received"
        counts = {"received": receipt["rows"], "applied": None, "held": None,
                  "quarantined": check["quarantined"] if check else None,
                  "duplicates": check["duplicates"] if check else None}
    gate = check["gate"] if check else {}
    error = gate.get("error") or (None if entry else trigger.last_error(batch_id))
    report = {"report": f"/v1/batches/{batch_id}/report"} if entry is not None else {}
    return receipt | {"status": state, "counts": counts, "gate": gate.get("verdict"), "error": error,
                      "quarantined_rows": rows} | report


def _error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(home: Path, trigger: Trigger, feeds: dict[str, Feed] | None = None,
               limits: ParseLimits = PUSH_LIMITS) -> FastAPI:
    """The gateway as an ASGI app (run it with uvicorn) over a civicnet home; `feeds` (by slug) are
    the shipped feed configs unless given; `limits` bound the work one upload may cause."""
    gateway = _Gateway(home, trigger, feeds, limits)
    app = FastAPI(title="civicnet push gateway", docs_url=None, redoc_url=None, openapi_url=None)

    async def refused(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, GatewayError)
        return _error_response(exc.status, exc.message, exc.headers)

    async def failed(_: Request, exc: Exception) -> JSONResponse:
        log.error("gateway error: %s", type(exc).__name__, exc_info=exc)
        return _error_response(500, "the gateway failed to handle this request; nothing was confirmed, so send "
                                    "it again later, and tell the gateway's operator if it keeps failing")

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return _error_response(exc.status_code, f"{exc.detail}: the gateway serves POST "
                                                "/v1/datasets/<dataset>/batches, GET /v1/batches/<batch_id> "
                                                "and GET /v1/batches/<batch_id>/report")

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        return _error_response(422, f"the request is malformed: {exc}")

    app.add_exception_handler(GatewayError, refused)
    app.add_exception_handler(Exception, failed)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_api_route("/v1/health", health, methods=["GET"])
    app.add_api_route("/v1/datasets/{dataset}/batches", gateway.receive, methods=["POST"], status_code=202)
    app.add_api_route("/v1/batches/{batch_id}", gateway.status, methods=["GET"])
    app.add_api_route("/v1/batches/{batch_id}/report", gateway.report, methods=["GET"])
    return app


def health() -> dict[str, bool]:
    """GET /v1/health: the gateway answers (no auth)."""
    return {"ok": True}


class GatewayServer:
    """The gateway served by uvicorn on loopback in a background thread (the demo and the tests).

    `stop` and `start` again keep the port, so a client sees the gateway go down and come back."""

    def __init__(self, home: Path, trigger: Trigger, feeds: dict[str, Feed] | None = None, port: int = 0) -> None:
        self.app = create_app(home, trigger, feeds)
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL clients use."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GatewayServer:
        """Serve until `stop`; returns once the socket accepts connections."""
        import uvicorn  # the server only where one runs

        self._server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                     log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the gateway could not start on 127.0.0.1:{self.port}")
            time.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop serving (open requests finish first)."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
