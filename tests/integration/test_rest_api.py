"""REST connector against the health department's demo API, served over real HTTP on loopback."""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from civicnet.demo.departments.api import DemoApi, serve_api
from civicnet.demo.departments.health import change_health, generate_health, read_stations, write_stations
from connectors.feeds import RestSource, load_feeds
from connectors.parse import read_payload
from connectors.payload import Payload
from connectors.registry import connector_for
from connectors.rest import RestConnector, RestCredentialsError, RestSourceError, RestUnavailableError
from schemas.divisions import load_registry
from schemas.errors import TerminalError, TransientError

TOKEN = "s3cret-health-token-7f2c"
CONN_ID = "health_api"
PATH = "/api/v1/health-stations"
T0 = dt.datetime.fromisoformat("2021-06-01T08:00:00+08:00")


def station(n: int, minutes: int = 0, **overrides: Any) -> dict[str, Any]:
    """One source record; `minutes` after T0 is its updated_at."""
    record = {"station_no": f"H440303001001{n:02d}", "community_code": "440303001001",
              "station_name": f"大塘龙社区第{n}社康站", "kind": "社康站", "doctors": 3, "nurses": 5,
              "opened": "2015-03-01", "updated_at": (T0 + dt.timedelta(minutes=minutes)).isoformat(),
              "deleted": False}
    return {**record, **overrides}


def stations(count: int = 23) -> list[dict[str, Any]]:
    """`count` records, three to a timestamp (ties the paging must not lose)."""
    return [station(n, minutes=n // 3) for n in range(count)]


@pytest.fixture
def records_path(tmp_path: Path) -> Path:
    path = tmp_path / "stations.jsonl"
    write_stations(path, stations())
    return path


@pytest.fixture
def api(records_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DemoApi]:
    with serve_api(records_path, TOKEN) as running:
        set_connection(monkeypatch, running.url, TOKEN)
        yield running


def set_connection(monkeypatch: pytest.MonkeyPatch, url: str, token: str) -> None:
    parts = urlsplit(url)
    monkeypatch.setenv("AIRFLOW_CONN_HEALTH_API", json.dumps(
        {"conn_type": "http", "host": parts.hostname, "port": parts.port, "extra": {"token": token}}))


class Sleeps(list[float]):
    """Records the waits the connector asks for instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_connector(sleep: Callable[[float], None] | None = None, **overrides: Any) -> RestConnector:
    raw: dict[str, Any] = {"kind": "rest", "conn_id": CONN_ID, "path": PATH, "records": "data",
                           "pagination": {"style": "cursor", "size": 5}, "max_retries": 3, "backoff_seconds": 0.5}
    raw.update(overrides)
    wait = Sleeps() if sleep is None else sleep  # not `or`: an empty Sleeps is falsy
    return RestConnector(RestSource.model_validate(raw), ("station_no",), sleep=wait)


def incremental(sleep: Callable[[float], None] | None = None, lag: float = 300, **overrides: Any) -> RestConnector:
    cursor = {"param": "updated_since", "field": "updated_at", "lag_seconds": lag}
    return make_connector(sleep, cursor=cursor, **overrides)


def lines(payload: Payload) -> list[dict[str, Any]]:
    return [json.loads(line) for line in payload.data.decode("utf-8").splitlines()]


def pull(connector: RestConnector, state: dict[str, Any] | None = None) -> list[Payload]:
    return list(connector.fetch(state or {}))


def query_of(target: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(target).query)


PAGINATIONS = {
    "none": ({"style": "none"}, 1),
    "page": ({"style": "page", "size": 5}, 5),
    "offset": ({"style": "offset", "size": 5, "size_param": "limit"}, 5),
    "cursor": ({"style": "cursor", "size": 5}, 5),
    "link": ({"style": "link", "size": 5}, 5),
    "page-exact-multiple": ({"style": "page", "size": 23}, 2),
    "cursor-one-page": ({"style": "cursor", "size": 100}, 1),
}


@pytest.mark.parametrize(("pagination", "requests_made"), PAGINATIONS.values(), ids=PAGINATIONS.keys())
@pytest.mark.parametrize("mode", ["full", "incremental"])
def test_every_pagination_style_takes_every_record_once(api: DemoApi, pagination: dict[str, Any], requests_made: int,
                                                       mode: str) -> None:
    connector = (make_connector if mode == "full" else incremental)(pagination=pagination)
    (payload,) = pull(connector)
    taken = [r["station_no"] for r in lines(payload)]
    assert sorted(taken) == sorted(r["station_no"] for r in stations())
    assert len(taken) == len(set(taken))
    assert len(api.requests) == requests_made
    assert payload.media_type == "application/x-ndjson"
    assert read_payload(payload.data, payload.media_type, payload.encoding, payload.name).num_rows == 23


def test_payload_keeps_the_records_as_sent(api: DemoApi) -> None:
    (payload,) = pull(make_connector())
    assert payload.name == "health-stations.jsonl"
    assert payload.cursor == {}
    first = payload.data.decode("utf-8").splitlines()[0]
    assert first == json.dumps(station(0), ensure_ascii=False)
    table = read_payload(payload.data, payload.media_type, payload.encoding, payload.name)
    assert set(table.column("deleted").to_pylist()) == {"false"}


def test_incremental_pull_sends_the_inclusive_boundary_and_takes_only_changes(api: DemoApi,
                                                                              records_path: Path) -> None:
    connector = incremental(lag=300)
    (first,) = pull(connector)
    watermark = dt.datetime.fromisoformat(first.cursor["watermark"])
    assert watermark == T0 + dt.timedelta(minutes=7)
    assert first.name.startswith("health-stations-start-")
    assert pull(connector, dict(first.cursor)) == []
    assert query_of(api.requests[-1])["updated_since"] == [(watermark - dt.timedelta(seconds=300)).isoformat()]

    records = stations()
    records[22] = {**records[22], "doctors": 9}  # same timestamp as the watermark: inclusive boundary
    records[0] = {**records[0], "doctors": 4, "updated_at": (T0 + dt.timedelta(minutes=30)).isoformat()}
    records.append(station(40, minutes=31))
    write_stations(records_path, records)
    (second,) = pull(connector, dict(first.cursor))
    assert sorted(r["station_no"] for r in lines(second)) == [records[0]["station_no"], records[22]["station_no"],
                                                              station(40)["station_no"]]
    assert second.cursor["watermark"] == station(40, minutes=31)["updated_at"]
    assert pull(connector, dict(second.cursor)) == []


def test_a_late_write_inside_the_lag_window_is_taken_next_pull(api: DemoApi, records_path: Path) -> None:
    connector = incremental(lag=300)
    (first,) = pull(connector)
    records = stations()
    late = T0 + dt.timedelta(minutes=7) - dt.timedelta(seconds=120)  # below the watermark, inside the lag
    records[1] = {**records[1], "nurses": 11, "updated_at": late.isoformat()}
    write_stations(records_path, records)
    (second,) = pull(connector, dict(first.cursor))
    assert lines(second) == [records[1]]
    assert second.cursor["watermark"] == first.cursor["watermark"]
    assert pull(connector, dict(second.cursor)) == []


def test_a_record_moving_to_a_later_page_mid_pull_is_taken_once_in_its_last_version(
        api: DemoApi, records_path: Path) -> None:
    records = stations()
    moved = {**records[0], "doctors": 12, "updated_at": (T0 + dt.timedelta(hours=1)).isoformat()}

    def edit_while_waiting(seconds: float) -> None:  # the department edits between our page 1 and page 2
        write_stations(records_path, [moved, *records[1:]])

    api.inject(503, 1, after=1)
    (payload,) = pull(incremental(sleep=edit_while_waiting))
    taken = lines(payload)
    assert [r for r in taken if r["station_no"] == moved["station_no"]] == [moved]
    assert len(taken) == 23
    assert payload.cursor["watermark"] == moved["updated_at"]


def test_429_with_retry_after_is_waited_out_then_the_pull_succeeds(api: DemoApi) -> None:
    sleeps = Sleeps()
    api.inject(429, 2, retry_after=3)
    (payload,) = pull(make_connector(sleeps))
    assert len(lines(payload)) == 23
    assert sleeps == [3.0, 3.0]  # Retry-After outweighs the 0.5 s and 1 s backoff


def test_503_beyond_max_retries_is_transient_after_exponential_backoff(api: DemoApi) -> None:
    sleeps = Sleeps()
    api.inject(503, 4)
    with pytest.raises(RestUnavailableError, match=r"503 Service Unavailable") as caught:
        pull(make_connector(sleeps, max_retries=3))
    assert isinstance(caught.value, TransientError)
    assert PATH in str(caught.value) and CONN_ID in str(caught.value)
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(api.requests) == 4


def test_503_within_max_retries_recovers(api: DemoApi) -> None:
    api.inject(503, 3)
    (payload,) = pull(make_connector(max_retries=3))
    assert len(lines(payload)) == 23


def test_retry_after_longer_than_a_minute_fails_at_once_for_airflow_to_retry(api: DemoApi) -> None:
    sleeps = Sleeps()
    api.inject(429, 1, retry_after=3600)
    with pytest.raises(RestUnavailableError, match="3600 s"):
        pull(make_connector(sleeps))
    assert sleeps == []


def test_connection_refused_is_transient(monkeypatch: pytest.MonkeyPatch, records_path: Path) -> None:
    with serve_api(records_path, TOKEN) as stopped:
        url = stopped.url  # a port that was free a moment ago and is closed now
    set_connection(monkeypatch, url, TOKEN)
    sleeps = Sleeps()
    with pytest.raises(RestUnavailableError, match="ConnectionError"):
        pull(make_connector(sleeps, max_retries=2))
    assert sleeps == [0.5, 1.0]


def test_a_server_that_never_answers_times_out_as_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never accepts, never answers
        set_connection(monkeypatch, f"http://127.0.0.1:{silent.getsockname()[1]}", TOKEN)
        sleeps = Sleeps()
        with pytest.raises(RestUnavailableError, match="ReadTimeout") as caught:
            pull(make_connector(sleeps, max_retries=1, timeout_seconds=0.2))
    assert sleeps == [0.5]
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize("token", ["wrong-token", ""], ids=["wrong", "missing"])
def test_refused_credentials_are_terminal_and_name_the_connection_not_the_token(
        api: DemoApi, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, token: str) -> None:
    set_connection(monkeypatch, api.url, token)
    caplog.set_level(logging.DEBUG)
    sleeps = Sleeps()
    with pytest.raises(RestCredentialsError) as caught:
        pull(make_connector(sleeps))
    message = str(caught.value)
    assert isinstance(caught.value, TerminalError)
    assert "401" in message and repr(CONN_ID) in message
    assert TOKEN not in message and (not token or token not in message)
    assert TOKEN not in caplog.text and (not token or token not in caplog.text)
    assert sleeps == []


def test_unknown_path_is_terminal_and_names_the_path(api: DemoApi) -> None:
    with pytest.raises(RestSourceError, match=r"404 Not Found: fix 'path' \('/api/v1/health-station'\)"):
        pull(make_connector(path="/api/v1/health-station"))


def test_a_rejected_query_is_terminal_with_the_api_s_explanation(api: DemoApi) -> None:
    with pytest.raises(RestSourceError, match=r"400 Bad Request: .*'updated_since' must be an ISO 8601 timestamp"):
        pull(make_connector(params={"updated_since": "yesterday"}))


def test_a_body_without_the_records_key_is_terminal_and_names_the_key(api: DemoApi) -> None:
    with pytest.raises(RestSourceError, match=r"has no key 'items' \(it has \['data', 'next_cursor'\]\)"):
        pull(make_connector(records="items"))


@pytest.mark.parametrize("mode", ["full", "incremental"])
def test_an_empty_source_gives_no_payload(api: DemoApi, records_path: Path, mode: str) -> None:
    write_stations(records_path, [])
    assert pull(make_connector() if mode == "full" else incremental()) == []
    assert len(api.requests) == 1


def test_the_token_never_reaches_logs_errors_or_payloads(api: DemoApi, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api.inject(503, 3)
    connector = incremental(max_retries=2)
    with pytest.raises(RestUnavailableError) as caught:
        pull(connector)
    (payload,) = pull(connector)
    for text in (caplog.text, str(caught.value), repr(connector), payload.name, json.dumps(payload.cursor)):
        assert TOKEN not in text
    assert TOKEN.encode() not in payload.data
    assert "retry 1/2" in caplog.text  # the retries were logged, without the token


def test_the_api_compares_updated_since_as_instants(api: DemoApi) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    since = (T0 + dt.timedelta(minutes=7)).astimezone(dt.UTC).isoformat()  # same instant, other offset
    body = requests.get(f"{api.url}{PATH}", params={"updated_since": since}, headers=headers, timeout=5).json()
    assert [r["station_no"] for r in body["data"]] == [station(n)["station_no"] for n in (21, 22)]
    assert body["next_cursor"] is None
    naive = requests.get(f"{api.url}{PATH}", params={"updated_since": "2021-06-01T08:00:00"}, headers=headers,
                         timeout=5)
    assert naive.status_code == 400


def test_the_api_links_the_next_page_absolutely_until_the_last(api: DemoApi) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    first = requests.get(f"{api.url}{PATH}", params={"page": 1, "page_size": 20}, headers=headers, timeout=5)
    assert first.links["next"]["url"] == f"{api.url}{PATH}?page_size=20&page=2"
    assert first.json()["next_cursor"] is not None
    last = requests.get(first.links["next"]["url"], headers=headers, timeout=5)
    assert len(last.json()["data"]) == 3
    assert "next" not in last.links and last.json()["next_cursor"] is None


def test_the_shipped_feed_pulls_the_generated_register_then_its_changes(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = generate_health(tmp_path, load_registry(2020), scale=0.001)
    register = read_stations(path)
    feed = load_feeds()["health_stations"]
    with serve_api(path, TOKEN) as running:
        set_connection(monkeypatch, running.url, TOKEN)
        connector = connector_for(feed, tmp_path)
        (first,) = connector.fetch({})
        assert sorted(r["station_no"] for r in lines(first)) == sorted(r["station_no"] for r in register)
        counts = change_health(tmp_path, fraction=0.05)
        (second,) = connector.fetch(dict(first.cursor))
    changed = lines(second)
    assert len(changed) == counts["restaffed"] + counts["closed"]
    assert sum(r["deleted"] for r in changed) == counts["closed"]
    table = read_payload(second.data, second.media_type, second.encoding, second.name)
    assert table.column("deleted").to_pylist().count("true") == counts["closed"]
