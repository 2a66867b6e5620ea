"""REST connector logic without a server: base URLs, credentials, backoff, state, boundary dedupe, bodies."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.feeds import RestSource, load_feeds
from connectors.registry import connector_for
from connectors.rest import (
    ApiClient,
    RestConnector,
    RestSourceError,
    backoff_seconds,
    base_url,
    content_digest,
    last_by_key,
    open_session,
    retry_after_seconds,
    scrub,
    select_new,
)
from connectors.secrets import Connection
from schemas.contract import load_contracts

T0 = dt.datetime.fromisoformat("2021-06-01T08:00:00+08:00")
NOW = dt.datetime(2021, 6, 1, 0, 0, tzinfo=dt.UTC)


def record(no: str, minutes: float = 0, **overrides: Any) -> dict[str, Any]:
    """A source record updated `minutes` after T0."""
    return {"station_no": no, "doctors": 3, "updated_at": (T0 + dt.timedelta(minutes=minutes)).isoformat(),
            **overrides}


def by_key(*records: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return last_by_key(records, ("station_no",))


def conn(**overrides: Any) -> Connection:
    return Connection(**{"conn_id": "health_api", "conn_type": "http", "host": "api.health.sz", **overrides})


@pytest.mark.parametrize(("overrides", "expected"), [
    ({}, "http://api.health.sz"),
    ({"conn_type": "https", "port": 8443}, "https://api.health.sz:8443"),
    ({"schema": "/gateway/v2/"}, "http://api.health.sz/gateway/v2"),
    ({"schema": "https"}, "https://api.health.sz"),  # Airflow's HTTP hook keeps the scheme in `schema`
    ({"host": "https://gw.sz.gov.cn/health/"}, "https://gw.sz.gov.cn/health"),
], ids=["http", "https-port", "schema-as-base-path", "schema-as-scheme", "host-is-url"])
def test_base_url_from_the_connection(overrides: dict[str, Any], expected: str) -> None:
    assert base_url(conn(**overrides)) == expected


@pytest.mark.parametrize(("overrides", "message"), [
    ({"host": ""}, "has no host"),
    ({"conn_type": "postgres"}, "needs type http or https"),
], ids=["no-host", "wrong-type"])
def test_base_url_refuses_an_unusable_connection(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(RestSourceError, match=message):
        base_url(conn(**overrides))


def test_a_token_becomes_a_bearer_header_and_a_login_basic_auth() -> None:
    with open_session(conn(extra={"token": "t0k"}, login="u", password="p")) as session:
        assert session.headers["Authorization"] == "Bearer t0k"
        assert session.auth is None
    with open_session(conn(login="u", password="p")) as session:
        assert "Authorization" not in session.headers
        assert session.auth == ("u", "p")


def test_scrub_hides_every_secret() -> None:
    assert scrub("token abc and pw xyz", ["abc", "xyz"]) == "token *** and pw ***"


def test_backoff_doubles_and_stops_at_a_minute() -> None:
    assert [backoff_seconds(n, 1.5) for n in range(4)] == [1.5, 3.0, 6.0, 12.0]
    assert backoff_seconds(10, 1.0) == 60.0


@pytest.mark.parametrize(("header", "expected"), [
    ("7", 7.0),
    (" 120 ", 120.0),
    ("Tue, 01 Jun 2021 00:00:30 GMT", 30.0),
    ("Mon, 31 May 2021 23:00:00 GMT", 0.0),  # a date already past: no extra wait
    ("soon", None),
    ("", None),
    (None, None),
], ids=["seconds", "padded", "http-date", "past-date", "garbage", "empty", "absent"])
def test_retry_after_in_seconds_or_as_an_http_date(header: str | None, expected: float | None) -> None:
    assert retry_after_seconds(header, NOW) == expected


def test_a_key_met_twice_keeps_its_last_version() -> None:
    taken = by_key(record("H1"), record("H2"), record("H1", minutes=5, doctors=9))
    assert list(taken.values()) == [record("H2"), record("H1", minutes=5, doctors=9)]
    assert list(taken) == ['["H2"]', '["H1"]']


def test_a_record_without_its_key_is_refused() -> None:
    with pytest.raises(RestSourceError, match=r"no value for key field\(s\) \['station_no'\]"):
        last_by_key([{"doctors": 3}], ("station_no",))


def test_content_digest_ignores_key_order() -> None:
    assert content_digest({"a": 1, "b": "社"}) == content_digest({"b": "社", "a": 1})
    assert content_digest({"a": 1}) != content_digest({"a": 2})


def test_first_pull_takes_all_and_remembers_the_lag_window() -> None:
    records = by_key(record("H1", 0), record("H2", 9.9), record("H3", 10), record("H4", 15))
    fresh, state = select_new(records, "updated_at", 300, {})
    assert fresh == list(records.values())
    assert state["watermark"] == (T0 + dt.timedelta(minutes=15)).isoformat()
    assert sorted(state["boundary"]) == ['["H3"]', '["H4"]']  # at or after watermark - 5 min (inclusive)
    assert state["boundary"]['["H4"]'] == content_digest(record("H4", 15))


def test_re_read_unchanged_records_are_skipped_and_changed_ones_taken() -> None:
    _, state = select_new(by_key(record("H3", 14), record("H4", 15)), "updated_at", 300, {})
    again = by_key(record("H3", 14), record("H4", 15, doctors=7), record("H5", 15), record("H6", 12))
    fresh, new_state = select_new(again, "updated_at", 300, state)
    assert fresh == [record("H4", 15, doctors=7), record("H5", 15), record("H6", 12)]
    assert new_state["watermark"] == state["watermark"]
    assert set(new_state["boundary"]) == {'["H3"]', '["H4"]', '["H5"]', '["H6"]'}
    fresh, _ = select_new(again, "updated_at", 300, new_state)
    assert fresh == []


def test_the_watermark_never_moves_back_and_compares_instants() -> None:
    state = {"watermark": (T0 + dt.timedelta(hours=1)).isoformat(), "boundary": {}}
    utc_later = (T0 + dt.timedelta(hours=2)).astimezone(dt.UTC).isoformat()
    _, kept = select_new(by_key(record("H1", 0)), "updated_at", 0, state)
    assert kept["watermark"] == state["watermark"]
    _, moved = select_new(by_key(record("H1", 0, updated_at=utc_later)), "updated_at", 0, state)
    assert moved["watermark"] == utc_later


def test_a_boundary_list_from_a_key_without_uniqueness_is_honoured() -> None:
    one = record("H1", 0)
    state = {"watermark": one["updated_at"], "boundary": {'["H1"]': ["0" * 40, content_digest(one)]}}
    assert select_new(by_key(one), "updated_at", 0, state)[0] == []


@pytest.mark.parametrize("value", [None, "2021-06-01 08:00", "2021-06-01T08:00:00", 1622505600],
                         ids=["missing", "no-seconds-no-offset", "naive", "number"])
def test_a_cursor_field_without_an_aware_timestamp_is_refused(value: Any) -> None:
    with pytest.raises(RestSourceError, match="cursor field 'updated_at'"):
        select_new(by_key(record("H1", updated_at=value)), "updated_at", 0, {})


def test_a_bad_cursor_value_is_described_not_quoted() -> None:
    with pytest.raises(RestSourceError, match="a str of 3 characters") as caught:
        select_new(by_key(record("H1", updated_at="王小明")), "updated_at", 0, {})
    assert "王小明" not in str(caught.value)


def test_a_broken_watermark_in_the_state_asks_for_a_reset() -> None:
    with pytest.raises(RestSourceError, match="reset the feed's state"):
        select_new(by_key(record("H1")), "updated_at", 0, {"watermark": "yesterday"})


def response(body: bytes, status: int = 200, content_type: str = "application/json") -> requests.Response:
    """A received response as requests builds it (for body handling without a server)."""
    answer = requests.Response()
    answer.status_code, answer._content, answer.url = status, body, "http://api.health.sz/api/v1/health-stations"
    answer.headers["Content-Type"] = content_type
    return answer


def client(**source: Any) -> ApiClient:
    raw = {"kind": "rest", "conn_id": "health_api", "path": "/api/v1/health-stations", **source}
    return ApiClient(RestSource.model_validate(raw), conn(extra={"token": "t0k"}), requests.Session(), lambda s: None)


@pytest.mark.parametrize(("records", "body", "expected"), [
    ("data", {"data": [{"a": 1}], "next_cursor": None}, [{"a": 1}]),
    ("data", {"data": None}, []),
    ("", [{"a": 1}, {"a": 2}], [{"a": 1}, {"a": 2}]),
], ids=["under-key", "null-list", "bare-list"])
def test_records_are_read_from_the_configured_key(records: str, body: Any, expected: list[Any]) -> None:
    assert client(records=records)._records(body, "u") == expected


@pytest.mark.parametrize(("records", "body", "message"), [
    ("data", {"items": []}, r"has no key 'data' \(it has \['items'\]\)"),
    ("data", [], r"has no key 'data' \(it has list\)"),
    ("data", {"data": {"a": 1}}, r"key 'data' is not a list of JSON objects"),
    ("", [1, 2], "the body is not a list of JSON objects"),
], ids=["other-key", "list-body", "object-not-list", "scalars"])
def test_a_body_of_the_wrong_shape_names_what_to_fix(records: str, body: Any, message: str) -> None:
    with pytest.raises(RestSourceError, match=message):
        client(records=records)._records(body, "u")


def test_a_body_that_is_not_json_is_terminal() -> None:
    api = client()
    answer = response(b"<html>maintenance</html>", content_type="text/html")
    api.get = lambda url, params: answer  # type: ignore[method-assign]
    with pytest.raises(RestSourceError, match=r"did not answer JSON \(Content-Type 'text/html'.*maintenance"):
        api.page("http://api.health.sz/api/v1/health-stations", {})


def test_a_body_repeating_a_key_is_refused() -> None:
    api = client()
    answer = response(b'{"data": [{"id": "H1", "name": "a", "name": "b"}]}')
    api.get = lambda url, params: answer  # type: ignore[method-assign]
    with pytest.raises(RestSourceError, match="repeats the key 'name'"):
        api.page("http://api.health.sz/api/v1/health-stations", {})


def test_a_truncated_json_body_is_not_quoted() -> None:
    api = client()
    answer = response(b'{"data": [{"id": "440304199001011233", "name": "\xe7\x8e\x8b', content_type="application/json")
    api.get = lambda url, params: answer  # type: ignore[method-assign]
    with pytest.raises(RestSourceError, match="did not answer JSON") as caught:
        api.page("http://api.health.sz/api/v1/health-stations", {})
    assert "440304199001011233" not in str(caught.value)


@pytest.mark.parametrize(("link", "message"), [
    ("<https://collector.example.com/steal?page=2>; rel=\"next\"", "links its next page to another origin"),
    ("</api/v1/health-stations?page_size=500>; rel=\"next\"", "links back to a page already read"),
], ids=["other-origin", "loop"])
def test_a_next_link_is_followed_only_on_the_same_origin_and_never_in_a_loop(link: str, message: str) -> None:
    api = client(pagination={"style": "link"})
    asked: list[str] = []
    first = response(b'{"data": [{"a": 1}]}')
    first.url = "http://api.health.sz/api/v1/health-stations?page_size=500"
    first.headers["Link"] = link

    def get(url: str, params: Any) -> requests.Response:
        asked.append(url)
        return first

    api.get = get  # type: ignore[method-assign]
    with pytest.raises(RestSourceError, match=message):
        list(api.pages({}))
    assert asked == ["http://api.health.sz/api/v1/health-stations"]


def test_an_error_body_is_shown_short_and_without_the_token() -> None:
    answer = response(json.dumps({"error": "bad", "echo": "t0k", "pad": "x" * 500}).encode(), status=422)
    with pytest.raises(RestSourceError, match="422") as caught:
        client()._check(answer, answer.url)
    assert "t0k" not in str(caught.value)
    assert "x" * 200 not in str(caught.value)


def test_cursor_paging_needs_a_records_key() -> None:
    source = RestSource.model_validate({"kind": "rest", "conn_id": "health_api", "path": "/x", "records": "",
                                        "pagination": {"style": "cursor"}})
    with pytest.raises(RestSourceError, match="set 'records'"):
        RestConnector(source, ("station_no",))


def test_the_shipped_feed_builds_a_rest_connector_on_the_station_key() -> None:
    feed = load_feeds()["health_stations"]
    connector = connector_for(feed, Path("/nowhere"))
    assert isinstance(connector, RestConnector)
    assert connector.key == ("station_no",)
    assert connector.source.cursor is not None and connector.source.cursor.lag_seconds == 300
    contract = load_contracts()[feed.dataset]
    assert feed.department == contract.owner
    assert set(feed.fields.values()) | set(feed.constants) == set(contract.field_names)
    assert set(feed.values["station_type"].values()) == {"centre", "station"}
