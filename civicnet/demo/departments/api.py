"""The health department's station API, faked on loopback over real HTTP for the demo and the tests.

We do not have the department's system, so this serves the generated register (`civicnet.demo.departments.health`,
a JSON Lines file re-read on every request, so data can change between pulls) the way such APIs do:

`GET /api/v1/health-stations` with `Authorization: Bearer <token>` returns `{"data": [...],
"next_cursor": ...}`, records sorted by (`updated_at`, `station_no`), filtered by `updated_since`
(inclusive; ISO 8601 with a UTC offset, compared as instants). Every pagination style is served:
`page` + `page_size` (from 1), `offset` + `limit`, and `cursor` (an opaque keyset token; with only
`page_size` or `limit`, the first cursor page). With no paging parameter at all the whole result
comes in one response. `next_cursor` is null on the last page, and while there is a next page an
RFC 8288 `Link: <absolute url>; rel="next"` header points at it, in the style the request used.

`DemoApi.inject(status, times, retry_after, after)` makes the next requests fail (429, 503, ...) so tests
can exercise retries. Nothing secret is logged: the request line only, never headers.
Run standalone with `CIVICNET_DEMO_API_TOKEN=... python -m civicnet.demo.departments.api --records PATH --port N`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import contextlib
import datetime as dt
import hmac
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from schemas.errors import TerminalError

log = logging.getLogger(__name__)

PATH = "/api/v1/health-stations"
TOKEN_ENV = "CIVICNET_DEMO_API_TOKEN"
MAX_PAGE_SIZE = 1000


class BadRequestError(TerminalError, ValueError):
    """A query parameter the API cannot understand (answered with 400)."""


@dataclass
class Fault:
    """An injected failure: the next `times` requests answer `status`."""

    status: int
    times: int
    retry_after: str | None = None
    after: int = 0  # requests answered normally before the fault begins


@dataclass(frozen=True)
class Query:
    """The parsed query of one request: the filter and the page it asks for."""

    since: dt.datetime | None
    size: int | None
    style: str  # all, page, offset or cursor
    start: int = 0  # page number or offset
    after: tuple[str, str] | None = None  # cursor: the last (updated_at, station_no) already sent
    extra: Mapping[str, str] = field(default_factory=dict)  # parameters echoed into the next link


def _one(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return None if not values else values[-1]


def _int(params: Mapping[str, list[str]], name: str, low: int) -> int | None:
    text = _one(params, name)
    if text is None:
        return None
    if not text.isdigit() or int(text) < low:
        raise BadRequestError(f"'{name}' must be an integer >= {low}, not {text!r}")
    return int(text)


def parse_instant(text: str, name: str) -> dt.datetime:
    """An ISO 8601 timestamp with a UTC offset; a naive or malformed one is a bad request."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadRequestError(f"'{name}' must be an ISO 8601 timestamp, not {text!r}") from None
    if moment.tzinfo is None:
        raise BadRequestError(f"'{name}' needs a UTC offset (for example +08:00), got {text!r}")
    return moment


def encode_cursor(record: Mapping[str, Any]) -> str:
    """The opaque token for 'after this record' (keyset pagination)."""
    raw = json.dumps([record["updated_at"], record["station_no"]], ensure_ascii=False).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_cursor(token: str) -> tuple[str, str]:
    """The (updated_at, station_no) a cursor token stands for."""
    try:
        updated_at, station_no = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        parse_instant(updated_at, "cursor")
    except (BadRequestError, ValueError, TypeError, binascii.Error):
        raise BadRequestError("'cursor' is not a token this API issued") from None
    return str(updated_at), str(station_no)


def parse_query(target: str) -> Query:
    """The filter and paging of a request target such as `/api/v1/health-stations?page=2`."""
    params = parse_qs(urlsplit(target).query, keep_blank_values=True)
    since_text = _one(params, "updated_since")
    since = None if since_text is None else parse_instant(since_text, "updated_since")
    size = _int(params, "limit", 1) or _int(params, "page_size", 1)
    size = None if size is None else min(size, MAX_PAGE_SIZE)
    extra = {k: v for k in ("updated_since", "page_size", "limit") if (v := _one(params, k)) is not None}
    page, offset, cursor = _int(params, "page", 1), _int(params, "offset", 0), _one(params, "cursor")
    if page is not None:
        return Query(since, size or 100, "page", page, extra=extra)
    if offset is not None:
        return Query(since, size or 100, "offset", offset, extra=extra)
    if cursor is not None or size is not None:
        return Query(since, size or 100, "cursor", after=None if not cursor else decode_cursor(cursor), extra=extra)
    return Query(since, None, "all", extra=extra)


def _order(record: Mapping[str, Any]) -> tuple[dt.datetime, str]:
    return parse_instant(str(record["updated_at"]), "updated_at"), str(record["station_no"])


@dataclass(frozen=True)
class Register:
    """The records sorted by (updated_at, station_no), with those sort keys, for bisecting."""

    rows: list[dict[str, Any]]
    keys: list[tuple[dt.datetime, str]]

    @classmethod
    def of(cls, records: list[dict[str, Any]]) -> Register:
        """Sort records once."""
        pairs = sorted(((_order(r), r) for r in records), key=lambda p: p[0])
        return cls([r for _, r in pairs], [k for k, _ in pairs])


def select_page(records: list[dict[str, Any]] | Register,
                query: Query) -> tuple[list[dict[str, Any]], dict[str, str] | None]:
    """The records of the asked page, and the query parameters of the next page (None on the last)."""
    register = records if isinstance(records, Register) else Register.of(records)
    first = 0 if query.since is None else bisect.bisect_left(register.keys, (query.since, ""))
    if query.style == "all" or query.size is None:
        return register.rows[first:], None
    if query.style == "cursor":
        after = None if query.after is None else (parse_instant(query.after[0], "cursor"), query.after[1])
        begin = first if after is None else max(first, bisect.bisect_right(register.keys, after))
    else:
        begin = first + ((query.start - 1) * query.size if query.style == "page" else query.start)
    rows = register.rows
    end = begin + query.size
    page = rows[begin:end]
    if end >= len(rows) or not page:
        return page, None
    following = {"page": str(query.start + 1)} if query.style == "page" else \
        {"offset": str(end)} if query.style == "offset" else {"cursor": encode_cursor(page[-1])}
    return page, {**query.extra, **following}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: DemoApi


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no delayed-ACK stalls

    def log_message(self, format: str, *args: Any) -> None:
        """The request line and status only (never headers: they carry the token)."""
        log.info("demo api: " + format, *args)

    def do_GET(self) -> None:
        """Answer one GET: injected fault, auth, route, query, page."""
        api = self.server.api
        api.requests.append(self.path)
        fault = api.take_fault()
        if fault is not None:
            headers = {} if fault.retry_after is None else {"Retry-After": fault.retry_after}
            self._json(fault.status, {"error": HTTPStatus(fault.status).phrase, "message": "injected fault"}, headers)
            return
        if not api.authorized(self.headers.get("Authorization")):
            self._json(401, {"error": "unauthorized", "message": "send 'Authorization: Bearer <token>'"},
                       {"WWW-Authenticate": 'Bearer realm="health"'})
            return
        if urlsplit(self.path).path != PATH:
            self._json(404, {"error": "not found", "message": f"no resource at {urlsplit(self.path).path}"})
            return
        self._answer_records()

    def _answer_records(self) -> None:
        api = self.server.api
        try:
            query = parse_query(self.path)
            page, following = select_page(api.load(), query)
        except BadRequestError as err:
            self._json(400, {"error": "bad request", "message": str(err)})
            return
        except OSError:
            log.exception("demo api: cannot read the records file")
            self._json(500, {"error": "internal server error", "message": "the register cannot be read"})
            return
        headers = {}
        next_cursor = None
        if following is not None:
            headers["Link"] = f'<{api.url}{PATH}?{urlencode(following)}>; rel="next"'
            next_cursor = encode_cursor(page[-1])
        self._json(200, {"data": page, "next_cursor": next_cursor}, headers)

    def _json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class DemoApi:
    """A running demo API: its base URL, the request targets it saw, and fault injection."""

    def __init__(self, records_path: Path, token: str, port: int = 0) -> None:
        self.records_path = Path(records_path)
        self._token = token.encode("utf-8")
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._cache: tuple[tuple[int, int], Register] | None = None
        self.requests: list[str] = []
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.api = self
        host, bound = self._server.server_address[:2]
        self.url = f"http://{host!s}:{bound}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="demo-api", daemon=True)

    def __repr__(self) -> str:
        return f"DemoApi(url={self.url!r}, records_path={str(self.records_path)!r})"

    def start(self) -> DemoApi:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def inject(self, status: int, times: int, retry_after: str | int | float | None = None, after: int = 0) -> None:
        """Make the next `times` requests answer `status` (with `Retry-After` if given), once `after`
        more requests have been answered normally (a failure in the middle of a pull)."""
        with self._lock:
            self._faults.append(Fault(status, times, None if retry_after is None else str(retry_after), after))

    def take_fault(self) -> Fault | None:
        """The fault the current request must answer with, if any (consuming one of its `times`)."""
        with self._lock:
            while self._faults and self._faults[0].times <= 0:
                self._faults.pop(0)
            if not self._faults:
                return None
            fault = self._faults[0]
            if fault.after > 0:
                fault.after -= 1
                return None
            fault.times -= 1
            return fault

    def authorized(self, header: str | None) -> bool:
        """Whether an Authorization header carries the bearer token (compared in constant time)."""
        scheme, _, credentials = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode("utf-8"), self._token)

    def load(self) -> Register:
        """The register as it is now: re-read whenever the file changed (its size or mtime), so data can
        change between pulls, and kept sorted in between so a large register pages in O(log n)."""
        stat = self.records_path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if self._cache is not None and self._cache[0] == stamp:
                return self._cache[1]
        lines = self.records_path.read_text(encoding="utf-8").splitlines()
        register = Register.of([json.loads(line) for line in lines if line.strip()])
        with self._lock:
            self._cache = (stamp, register)
        return register


@contextlib.contextmanager
def serve_api(records_path: Path, token: str, port: int = 0) -> Iterator[DemoApi]:
    """The demo API on 127.0.0.1 (`port` 0: any free port) while the block runs."""
    api = DemoApi(records_path, token, port).start()
    try:
        yield api
    finally:
        api.stop()


def main(argv: list[str] | None = None) -> int:
    """`python -m civicnet.demo.departments.api --records PATH --port N`; the token comes from
    CIVICNET_DEMO_API_TOKEN."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=Path, required=True, help="the stations register (JSON Lines)")
    parser.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (0: any free port)")
    args = parser.parse_args(argv)
    token = os.environ.get(TOKEN_ENV)
    if not token:
        print(f"set {TOKEN_ENV} to the bearer token clients must send (never on the command line)", file=sys.stderr)
        return 2
    if not args.records.is_file():
        print(f"records file {args.records} does not exist; generate it with civicnet.demo.departments.health",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with serve_api(args.records, token, args.port) as api:
        print(f"serving {api.url}{PATH} from {args.records}; Ctrl-C stops", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
