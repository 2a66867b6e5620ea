"""REST connector: a department's HTTP JSON API, read page by page into one JSON Lines payload per pull.

Where: the Airflow connection `source.conn_id` gives the base URL (conn_type http/https, host, port,
`schema` as a base path; a host holding a whole URL is used as it is) and the credentials (`extra`
token → `Authorization: Bearer`, else login/password → basic auth). The token lives only in the
session's headers: never in a message, a log line or a payload name.

Pages: `none` (one request), `page` (1, 2, ... until a page shorter than `size`), `offset`
(advancing by the records received, until a short page), `cursor` (the token under
`next_cursor` in each body, until it is null) or `link` (the RFC 8288 `rel="next"` header,
followed only on the same origin so the credentials never leave for another host). Page and
offset paging over data that changes mid-pull can shift records between pages; a key met twice in
one pull keeps its last version, but prefer cursor or link paging where the API has them. `size`
must not exceed the API's own largest page, or a short page ends the pull early.

Incremental (`source.cursor`): the request asks for `cursor.param = watermark - lag` (an inclusive
boundary, re-reading the lag window for late writes); the state keeps the watermark (the latest
`cursor.field` seen, an ISO timestamp with offset) and `boundary`, a content hash per key of the
records inside the lag window, so a record re-read unchanged is skipped and a changed one (even
with an older timestamp, as long as it is inside the window) is taken once; `connectors/cursor.py`
owns these rules and the state's shape. Without a cursor, each pull reads everything (identical
content lands once). No new record: no payload.

Failures: 429, 5xx, connection errors and timeouts are retried `max_retries` times with
exponential backoff (`backoff_seconds * 2**n`, at most 60 s, at least what `Retry-After` asks),
then raise `RestUnavailableError`; an API asking to wait longer than 60 s fails at once, for Airflow
to retry the task later. 401/403, 404, other 4xx and malformed bodies are terminal errors that say
what to fix.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import itertools
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urljoin, urlsplit

import requests

from connectors.cursor import INSTANT, CursorError, Window, content_digest, key_text, read_state, record_instant
from connectors.feeds import RestSource
from connectors.parse_limits import RepeatedKeyError, unique_keys
from connectors.payload import Payload
from connectors.secrets import Connection, get_connection
from schemas.errors import TerminalError, TransientError
from schemas.media import JSONL
from schemas.messages import excerpt_unless_data

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 60.0
EXCERPT_CHARS = 200
_RETRIED = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)

Record = dict[str, Any]


class RestSourceError(TerminalError):
    """A department API cannot be read as configured: wrong path, parameters, records key or body."""


class RestCredentialsError(TerminalError):
    """A department API refused the credentials of a feed's connection."""


class RestUnavailableError(TransientError):
    """A department API is unreachable, overloaded or failing right now; a retry may help."""


def base_url(conn: Connection) -> str:
    """The API's base URL from an Airflow connection (no credentials in it)."""
    if not conn.host:
        raise RestSourceError(f"Airflow connection {conn.conn_id!r} has no host: set it to the API's host name")
    # Airflow's HTTP connections keep the scheme in `schema`; ours may use it as a base path instead
    scheme_in_schema = conn.schema.lower() in ("http", "https")
    if "://" in conn.host:
        base = conn.host.rstrip("/")
    else:
        scheme = conn.schema.lower() if scheme_in_schema else conn.conn_type.lower() or "https"
        if scheme not in ("http", "https"):
            raise RestSourceError(f"Airflow connection {conn.conn_id!r} has type {conn.conn_type!r}; the REST "
                                  "connector needs type http or https")
        base = f"{scheme}://{conn.host}" + ("" if conn.port is None else f":{conn.port}")
    prefix = "" if scheme_in_schema else conn.schema.strip("/")
    return f"{base}/{prefix}" if prefix else base


def open_session(conn: Connection) -> requests.Session:
    """A session carrying the connection's credentials: a bearer token from `extra`, else basic auth."""
    session = requests.Session()
    session.headers.update({"Accept": "application/json", "User-Agent": "civicnet"})
    token = conn.extra.get("token")
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    elif conn.login:
        session.auth = (conn.login, conn.password or "")
    return session


def secrets_of(conn: Connection) -> list[str]:
    """The secret values of a connection, to be scrubbed from any text shown to people."""
    return [str(v) for v in (conn.extra.get("token"), conn.password) if v]


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Text with every secret value replaced by ***."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def backoff_seconds(attempt: int, base: float) -> float:
    """The wait before retry `attempt` (0-based): exponential, at most 60 s."""
    return float(min(base * 2**attempt, MAX_WAIT_SECONDS))


def retry_after_seconds(value: str | None, now: dt.datetime) -> float | None:
    """A `Retry-After` header (seconds, or an HTTP date) as seconds from `now`; None if absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # RFC 9110 dates are GMT
        moment = moment.replace(tzinfo=dt.UTC)
    return max(0.0, (moment - now).total_seconds())


def key_of(record: Mapping[str, Any], key: tuple[str, ...]) -> str:
    """The key of a record as JSON text (the state's boundary keys); a record lacking a key field is refused."""
    missing = [k for k in key if record.get(k) is None]
    if missing:
        raise RestSourceError(f"a record has no value for key field(s) {missing} (it has {sorted(record)}); fix "
                              "the key columns in the feed's 'fields' or ask the department why records lack them")
    return key_text([record[k] for k in key]) if key else content_digest(record)


def last_by_key(records: Iterable[Record], key: tuple[str, ...]) -> dict[str, Record]:
    """Records by key; a key met twice (pages shifted mid-pull) keeps its last version, in last-seen order."""
    by_key: dict[str, Record] = {}
    for record in records:
        k = key_of(record, key)
        by_key.pop(k, None)
        by_key[k] = record
    return by_key


def select_new(records: Mapping[str, Record], name: str, lag: float,
               state: Mapping[str, Any]) -> tuple[list[Record], dict[str, Any]]:
    """The records not taken unchanged by the last pull, and the state that covers them all.

    The new state's boundary holds every read record whose cursor lies within `lag` of the new watermark."""
    with _source_errors():
        window = Window(read_state(state, INSTANT), lag)
        fresh = [r for k, r in records.items() if window.take(k, record_instant(r, name), r)]
    return fresh, window.state().saved()


@contextlib.contextmanager
def _source_errors() -> Iterator[None]:
    """A feed's cursor that cannot be used, reported as this connector's own terminal error."""
    try:
        yield
    except CursorError as err:
        raise RestSourceError(str(err)) from None


def jsonl(records: Iterable[Record]) -> bytes:
    """Records as UTF-8 JSON Lines, one object per line."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def _safe(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z.+-]+", "_", text).strip("_")


class Page(NamedTuple):
    """One answered request: its records, its decoded body and the response (for headers)."""

    records: list[Record]
    body: Any
    response: requests.Response


@dataclass
class ApiClient:
    """Requests against one API with retries, and the pagination styles over them."""

    source: RestSource
    conn: Connection
    session: requests.Session
    sleep: Callable[[float], None]
    base: str = field(init=False)

    def __post_init__(self) -> None:
        self.base = base_url(self.conn)

    def where(self, url: str) -> str:
        """A request as people read it: path, connection id and base URL (never credentials)."""
        return f"GET {urlsplit(url).path} on connection {self.conn.conn_id!r} ({self.base})"

    def get(self, url: str, params: Mapping[str, Any]) -> requests.Response:
        """One answered GET, retrying what may pass; terminal statuses raise at once."""
        failure = ""
        for attempt in range(self.source.max_retries + 1):
            wait: float | None = None
            try:
                response = self.session.get(url, params=dict(params), timeout=(self.source.timeout_seconds,) * 2)
            except _RETRIED as err:
                failure = f"{type(err).__name__}: {err}"
            else:
                if response.status_code != 429 and response.status_code < 500:
                    self._check(response, url)
                    return response
                failure = f"HTTP {response.status_code} {response.reason}"
                wait = retry_after_seconds(response.headers.get("Retry-After"), dt.datetime.now(dt.UTC))
            if attempt == self.source.max_retries:
                break
            self._pause(url, attempt, wait, failure)
        raise RestUnavailableError(self._scrub(f"{self.where(url)} failed {self.source.max_retries + 1} time(s), "
                                               f"last with {failure}; the task will be retried"))

    def _pause(self, url: str, attempt: int, wait: float | None, failure: str) -> None:
        if wait is not None and wait > MAX_WAIT_SECONDS:
            raise RestUnavailableError(self._scrub(f"{self.where(url)} answered {failure} and asks to wait "
                                                   f"{wait:.0f} s (more than {MAX_WAIT_SECONDS:.0f} s); the task "
                                                   "will be retried later"))
        delay = max(backoff_seconds(attempt, self.source.backoff_seconds), wait or 0.0)
        log.warning("%s", self._scrub(f"{self.where(url)}: {failure}; retry {attempt + 1}/{self.source.max_retries} "
                                      f"in {delay:.1f} s"))
        self.sleep(delay)

    def _check(self, response: requests.Response, url: str) -> None:
        status = response.status_code
        if status < 300:
            return
        if status in (401, 403):
            raise RestCredentialsError(f"{self.where(url)} answered {status} {response.reason}: the API refused the "
                                       f"credentials of Airflow connection {self.conn.conn_id!r}; fix its token "
                                       "(extra 'token') or login/password")
        if status == 404:
            raise RestSourceError(f"{self.where(url)} answered 404 Not Found: fix 'path' "
                                  f"({self.source.path!r}) in the feed config, or the base path of the connection")
        excerpt = self._scrub(" ".join(response.text[:EXCERPT_CHARS].split()))
        raise RestSourceError(f"{self.where(url)} answered {status} {response.reason}: {excerpt}; check 'params', "
                              "'pagination' and 'cursor' in the feed config")

    def _scrub(self, text: str) -> str:
        return scrub(text, secrets_of(self.conn))

    def page(self, url: str, params: Mapping[str, Any]) -> Page:
        """One page: the records under `source.records` of the JSON body."""
        response = self.get(url, params)
        try:
            body = response.json(object_pairs_hook=unique_keys)
        except RepeatedKeyError as err:
            raise RestSourceError(f"{self.where(url)}: {err}; which value counts would be a guess: ask the "
                                  "department to fix its API") from None
        except ValueError:
            excerpt = excerpt_unless_data(self._scrub(" ".join(response.text[:EXCERPT_CHARS].split())))
            raise RestSourceError(f"{self.where(url)} did not answer JSON (Content-Type "
                                  f"{response.headers.get('Content-Type')!r}, body {excerpt}); fix 'path' in the "
                                  "feed config") from None
        return Page(self._records(body, url), body, response)

    def _records(self, body: Any, url: str) -> list[Record]:
        name = self.source.records
        if name:
            if not isinstance(body, dict) or name not in body:
                keys = sorted(body) if isinstance(body, dict) else type(body).__name__
                raise RestSourceError(f"the body of {self.where(url)} has no key {name!r} (it has {keys}); fix "
                                      "'records' in the feed config")
            body = body[name]
        items = [] if body is None else body
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise RestSourceError(f"{self.where(url)}: {'key ' + repr(name) if name else 'the body'} is not a list "
                                  "of JSON objects; fix 'records' in the feed config")
        return items

    def pages(self, params: Mapping[str, Any]) -> Iterator[list[Record]]:
        """The records of every page, in the feed's pagination style."""
        url, p = self.base + self.source.path, self.source.pagination
        if p.style == "none":
            yield self.page(url, params).records
        elif p.style in ("page", "offset"):
            yield from self._numbered(url, params)
        elif p.style == "cursor":
            yield from self._cursored(url, params)
        else:
            yield from self._linked(url, params)

    def _numbered(self, url: str, params: Mapping[str, Any]) -> Iterator[list[Record]]:
        p = self.source.pagination
        position = 1 if p.style == "page" else 0
        while True:
            name = p.page_param if p.style == "page" else p.offset_param
            records = self.page(url, {**params, name: position, p.size_param: p.size}).records
            yield records
            if len(records) < p.size:
                return
            position += 1 if p.style == "page" else len(records)

    def _cursored(self, url: str, params: Mapping[str, Any]) -> Iterator[list[Record]]:
        p = self.source.pagination
        token: Any = None
        for count in itertools.count(1):
            query = {**params, p.size_param: p.size, **({p.cursor_param: token} if token else {})}
            page = self.page(url, query)
            yield page.records
            following = page.body.get(p.next_cursor) if isinstance(page.body, dict) else None
            if not following:
                return
            if following == token:
                raise RestSourceError(f"{self.where(url)} returned the same next cursor on page {count}; check "
                                      "'pagination.next_cursor' in the feed config")
            token = following

    def _linked(self, url: str, params: Mapping[str, Any]) -> Iterator[list[Record]]:
        p = self.source.pagination
        query: Mapping[str, Any] = {**params, p.size_param: p.size}
        seen: set[str] = set()
        while True:
            page = self.page(url, query)
            seen.add(page.response.url)
            yield page.records
            following = page.response.links.get("next", {}).get("url")
            if not following:
                return
            url, query = urljoin(page.response.url, following), {}
            if urlsplit(url)[:2] != urlsplit(self.base)[:2]:
                raise RestSourceError(f"{self.where(self.base)} links its next page to another origin "
                                      f"({urlsplit(url).netloc}); the credentials are only sent to {self.base}")
            if url in seen:
                raise RestSourceError(f"{self.where(url)} links back to a page already read; its paging is broken")
            seen.add(url)


@dataclass(frozen=True)
class RestConnector:
    """Reads one department API endpoint: everything each pull, or what changed since the last one."""

    source: RestSource
    key: tuple[str, ...]
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.source.pagination.style == "cursor" and not self.source.records:
            raise RestSourceError("cursor pagination reads the next cursor from the body, so the records must sit "
                                  "under a key: set 'records' in the feed config")

    def fetch(self, state: Mapping[str, Any]) -> Iterator[Payload]:
        """One JSON Lines payload of the new or changed records (none when nothing is new)."""
        conn = get_connection(self.source.conn_id)
        cursor = self.source.cursor
        params: dict[str, Any] = dict(self.source.params)
        low = None
        if cursor is not None:
            with _source_errors():
                low = read_state(state, INSTANT).low(cursor.lag_seconds)
            if low is not None:
                params[cursor.param] = low.isoformat()
        with open_session(conn) as session:
            client = ApiClient(self.source, conn, session, self.sleep)
            records = last_by_key(itertools.chain.from_iterable(client.pages(params)), self.key)
        payload = self._payload(records, state, low)
        log.info("GET %s on connection %r: %d record(s) read, %s", self.source.path, self.source.conn_id,
                 len(records), "nothing new" if payload is None else f"payload {payload.name}")
        if payload is not None:
            yield payload

    def _payload(self, records: Mapping[str, Record], state: Mapping[str, Any],
                 low: dt.datetime | None) -> Payload | None:
        stem = _safe(self.source.path.rstrip("/").rsplit("/", 1)[-1]) or "records"
        cursor = self.source.cursor
        if cursor is None:
            if not records:
                return None
            return Payload(name=f"{stem}.jsonl", data=jsonl(records.values()), media_type=JSONL)
        fresh, new_state = select_new(records, cursor.field, cursor.lag_seconds, state)
        if not fresh:
            return None
        span = f"{'start' if low is None else low.isoformat()}-{new_state['watermark']}"
        return Payload(name=f"{stem}-{_safe(span)}.jsonl", data=jsonl(fresh), media_type=JSONL, cursor=new_state)
