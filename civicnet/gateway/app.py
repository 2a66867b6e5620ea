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
push limits (connectors.parse_limits.PUSH_LIMITS: rows, columns or JSON keys, inflated size), stopping at
the first one it passes (413 for rows or size, 422 for columns). Tokens and the Authorization
header are never logged; every refusal is JSON `{"error": "<what to do>"}`.

This module is the HTTP composition (routes, the Authorization header, error answers, the server);
the pieces it composes live with their concepts: senders and tokens (connectors/push/senders.py),
the upload checks (connectors/push/uploads.py), who may write which rows (schemas/rights.py),
landing a pushed file and its receipt (warehouse/landing.py), and what became of a batch
(civicnet/pipeline/batches.py).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from civicnet import context
from civicnet.pipeline.batches import Runs, batch_report, batch_status
from connectors.feeds import Feed, PushSource
from connectors.parse_encoding import detect_encoding
from connectors.parse_limits import PUSH_LIMITS, ParseLimits
from connectors.push.senders import Sender, authenticate
from connectors.push.uploads import (
    UploadRefusedError,
    body_too_large,
    check_file_name,
    check_rows,
    is_batch_id,
    media_type_of,
    push_feeds,
    push_source,
    read_upload,
    refusal,
)
from quality.conform import check_columns
from quality.rejection import to_csv, to_text
from schemas.contract import Contract, load_contracts
from schemas.errors import TerminalError
from schemas.i18n import UnknownLanguageError, negotiate_lang, parse_lang
from schemas.media import CSV
from schemas.rights import WriteRefusedError, writable_scope
from warehouse import landing

log = logging.getLogger(__name__)
REPORT_FORMATS = ("json", "csv", "text")


class GatewayError(TerminalError):
    """A request the gateway refuses: an HTTP status and a sentence the sender can act on."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class Trigger(Runs, Protocol):
    """What runs after a batch lands (ingest, then network sync); `node_lock` and `last_error` are
    what a batch's status reads of it (civicnet.pipeline.batches.Runs)."""

    def __call__(self, feed: str, batch_id: str) -> None:
        """Schedule the ingest of a landed batch; must return at once."""


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it declares or reaches more than `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _with_status_url(receipt: dict[str, Any]) -> dict[str, Any]:
    """A receipt as the sender reads it: with the URL its batch's status is asked at."""
    return receipt | {"status_url": f"/v1/batches/{receipt['batch_id']}"}


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

    def writable(self, sender: Sender, dataset: str) -> tuple[Feed, str | None]:
        """The dataset's push feed and the rows the sender may write of it (schemas.rights: None for
        all of them), if it may write the dataset (else 422 or 403)."""
        feed, source = push_source(self.feeds, dataset)
        return feed, writable_scope(self.contracts[dataset], sender.writer(), source.senders)

    async def receive(self, dataset: str, request: Request) -> JSONResponse:
        """POST /v1/datasets/{dataset}/batches: land one file."""
        sender = self.sender(request)
        feed, scope = self.writable(sender, dataset)
        name = check_file_name(request.headers.get("x-filename"))
        media_type, encoding = media_type_of(request.headers.get("content-type"), request.headers.get("x-encoding"))
        assert isinstance(feed.connector, PushSource)  # push_feeds holds push feeds only
        data = await _read_body(request, feed.connector.max_bytes)
        pushed = landing.PushedFile(feed.slug, feed.dataset, sender.department, sender.sender_id, scope, name,
                                    media_type, encoding)
        receipt, fresh = await run_in_threadpool(self.accept, sender, feed, pushed, data)
        if fresh:
            self.trigger(feed.slug, receipt["batch_id"])
            return JSONResponse(_with_status_url(receipt), status_code=202)
        return JSONResponse(_with_status_url(receipt) | {"replayed": True}, status_code=200)

    def accept(self, sender: Sender, feed: Feed, pushed: landing.PushedFile,
               data: bytes) -> tuple[dict[str, Any], bool]:
        """Validate and land a body; (receipt, True) if new, (the first receipt, False) if a replay."""
        first = landing.read_receipt(self.home, landing.batch_id_of(data))
        if first is not None:
            return self.replayed(sender, feed, first), False
        try:
            table = read_upload(data, pushed.media_type, pushed.encoding, pushed.source_name, self.limits)
            check_columns(table.column_names, context.source_mapping(feed), self.contracts[feed.dataset])
        except TerminalError as err:  # unreadable, too large, too many columns, or not the columns the feed maps
            raise refusal(err) from None
        check_rows(table, pushed.source_name)
        if pushed.media_type == CSV and pushed.encoding is None:
            pushed = dataclasses.replace(pushed, encoding=detect_encoding(data))
        with self.landing_lock:
            receipt, fresh = landing.land_push(self.home, pushed, data, table)
        if not fresh:
            return self.replayed(sender, feed, receipt), False
        log.info("landed batch %s of %s from sender %s (%s, %d rows)", receipt["batch_id"], feed.dataset,
                 sender.sender_id, pushed.source_name, table.num_rows)
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

    def visible_receipt(self, sender: Sender, batch_id: str) -> dict[str, Any]:
        """The receipt of a batch this sender may see, else 404 (revealing nothing of others' batches)."""
        receipt = landing.read_receipt(self.home, batch_id) if is_batch_id(batch_id) else None
        if receipt is None or not self.visible(sender, receipt):
            raise GatewayError(404, f"no batch {batch_id!r} sent by you or your department; check the id in "
                                    "your receipt")
        return receipt

    def status(self, batch_id: str, request: Request) -> dict[str, Any]:
        """GET /v1/batches/{batch_id}: what became of a batch, with its quarantined rows."""
        receipt = self.visible_receipt(self.sender(request), batch_id)
        return batch_status(self.home, _with_status_url(receipt), self.trigger)

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
        receipt = self.visible_receipt(sender, batch_id)
        report, busy = batch_report(self.home, self.trigger, receipt, self.feeds, self.contracts, language)
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

    async def upload_refused(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, UploadRefusedError)
        return _error_response(exc.status, exc.message)

    async def write_refused(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, WriteRefusedError)
        return _error_response(403, str(exc))

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
    app.add_exception_handler(UploadRefusedError, upload_refused)
    app.add_exception_handler(WriteRefusedError, write_refused)
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


class GatewayStartError(TerminalError):
    """The gateway's server stopped before it accepted a connection (its port taken, say)."""


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
                raise GatewayStartError(f"the gateway could not start on 127.0.0.1:{self.port}")
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
