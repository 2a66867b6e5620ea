"""Singer connector: the real demo tap runs as a subprocess; its records land as JSON Lines payloads."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from civicnet.demo.departments.justice import UPDATED_AT, generate_justice
from connectors.feeds import SingerSource
from connectors.parse import read_payload
from connectors.payload import Payload
from connectors.singer import SingerConnector
from schemas.divisions import load_registry
from schemas.errors import TerminalError, TransientError
from schemas.media import JSONL

TOKEN = "s3cret-justice-token"
STREAM = "mediation_committees"
START = dt.datetime(2021, 6, 1, 9, tzinfo=dt.timezone(dt.timedelta(hours=8)))


@pytest.fixture(autouse=True)
def justice_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Airflow connection holding the tap's token and the hash the bureau checks it against."""
    extra = {"token": TOKEN, "expected_token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest()}
    monkeypatch.setenv("AIRFLOW_CONN_JUSTICE_TAP", json.dumps({"conn_type": "generic", "extra": extra}))


def committee(i: int, minutes: int | None = None) -> dict[str, Any]:
    """A register record; `updated_at` is START plus `minutes` (default: i)."""
    at = START + dt.timedelta(minutes=i if minutes is None else minutes)
    return {"id": f"M440304001{i:03d}", "community": f"440304001{i:03d}", "name": f"社区{i}人民调解委员会",
            "chair": "王芳", "members": 5, "cases_this_year": i % 200, "updated_at": at.isoformat()}


def write_register(tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    path = tmp_path / "committees.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def demo_tap(register: Path, batch_records: int = 10_000, replication: str = "incremental",
             **config: Any) -> SingerConnector:
    source = SingerSource.model_validate({
        "kind": "singer", "command": ["{python}", "-m", "civicnet.demo.departments.tap"], "stream": STREAM,
        "config": {"source": str(register), **config}, "conn_id": "justice_tap", "replication": replication})
    return SingerConnector(source, ("id",), batch_records=batch_records)


def script_tap(tmp_path: Path, body: str, **source: Any) -> SingerConnector:
    """A throwaway tap: a Python script whose body can use `config` (the parsed --config file)."""
    script = tmp_path / "tap.py"
    script.write_text("import json, sys, time\nconfig = json.load(open(sys.argv[sys.argv.index('--config') + 1]))\n"
                      + textwrap.dedent(body), encoding="utf-8")
    settings = {"kind": "singer", "command": ["{python}", str(script)], "stream": STREAM, **source}
    return SingerConnector(SingerSource.model_validate(settings), ("id",), batch_records=1)


def ids(payloads: list[Payload]) -> list[str]:
    return [json.loads(line)["id"] for p in payloads for line in p.data.splitlines()]


def bookmark(payload: Payload) -> str:
    return str(payload.cursor["singer_state"]["bookmarks"][STREAM]["updated_at"])


def taken_until_error(fetched: Iterator[Payload]) -> tuple[list[Payload], BaseException]:
    payloads: list[Payload] = []
    with pytest.raises(TransientError) as caught:
        for payload in fetched:
            payloads.append(payload)
    return payloads, caught.value


def test_records_of_the_generated_register_become_one_jsonl_payload(tmp_path: Path) -> None:
    register = generate_justice(tmp_path, load_registry(2020))
    expected = json.loads(register.read_text(encoding="utf-8"))
    (payload,) = demo_tap(register).fetch({})
    assert (payload.name, payload.media_type) == (f"{STREAM}-1.jsonl", JSONL)
    table = read_payload(payload.data, payload.media_type, payload.encoding, payload.name)
    assert table.num_rows == len(expected) > 700
    assert table["id"].to_pylist() == sorted(r["id"] for r in expected)
    assert set(table["name"].to_pylist()) == {r["name"] for r in expected}
    assert payload.cursor == {"singer_state": {"bookmarks": {STREAM: {"updated_at": UPDATED_AT}}}}


def test_a_fetch_from_the_returned_state_emits_only_the_boundary_records(tmp_path: Path) -> None:
    records = [committee(1, 0), committee(2, 0), committee(3, 5), committee(4, 5)]
    register = write_register(tmp_path, records)
    tap = demo_tap(register)
    (first,) = tap.fetch({})
    assert ids([first]) == ["M440304001001", "M440304001002", "M440304001003", "M440304001004"]
    (again,) = tap.fetch(first.cursor)
    assert ids([again]) == ["M440304001003", "M440304001004"]  # inclusive bookmark: the last instant again
    write_register(tmp_path, [*records, committee(5, 9)])
    (third,) = tap.fetch(first.cursor)
    assert ids([third]) == ["M440304001003", "M440304001004", "M440304001005"]
    assert bookmark(third) == committee(5, 9)["updated_at"]


def test_an_empty_run_yields_nothing_so_no_state_is_saved(tmp_path: Path) -> None:
    assert list(demo_tap(write_register(tmp_path, [])).fetch({})) == []


def test_payload_boundaries_follow_state_messages(tmp_path: Path) -> None:
    register = write_register(tmp_path, [committee(i) for i in range(1234)])
    payloads = list(demo_tap(register, batch_records=600).fetch({}))
    # the tap says STATE after 500, 1000 and 1234 records; 500 pending are below the threshold
    assert [len(p.data.splitlines()) for p in payloads] == [1000, 234]
    assert [bookmark(p) for p in payloads] == [committee(999)["updated_at"], committee(1233)["updated_at"]]
    assert [p.name for p in payloads] == [f"{STREAM}-1.jsonl", f"{STREAM}-2.jsonl"]
    assert ids(payloads) == [committee(i)["id"] for i in range(1234)]
    (whole,) = demo_tap(register).fetch({})
    assert whole.data == b"".join(p.data for p in payloads)


def test_a_full_table_tap_syncs_the_whole_stream_as_one_batch_every_pull(tmp_path: Path) -> None:
    register = write_register(tmp_path, [committee(i) for i in range(1234)])
    tap = demo_tap(register, batch_records=600, replication="full_table")
    (first,) = tap.fetch({})  # one payload, not one per STATE: a whole register is one batch
    assert ids([first]) == [committee(i)["id"] for i in range(1234)]
    (again,) = tap.fetch(first.cursor)  # the saved bookmark is not handed to the tap
    assert again.data == first.data


def test_a_failed_run_keeps_its_checkpoints_and_a_clean_run_recovers(tmp_path: Path) -> None:
    register = write_register(tmp_path, [committee(i) for i in range(1200)])
    landed, error = taken_until_error(demo_tap(register, batch_records=500, fail_after=1100).fetch({}))
    assert [len(p.data.splitlines()) for p in landed] == [500, 500]
    assert "server error" in str(error) and "code 1" in str(error)
    rest = list(demo_tap(register, batch_records=500).fetch(landed[-1].cursor))
    assert ids(rest) == [committee(i)["id"] for i in range(999, 1200)]  # from the boundary record on
    assert set(ids(landed) + ids(rest)) == {committee(i)["id"] for i in range(1200)}


def test_a_refused_token_is_terminal_and_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {"token": "wrong-token-123", "expected_token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest()}
    monkeypatch.setenv("AIRFLOW_CONN_JUSTICE_TAP", json.dumps({"extra": extra}))
    with pytest.raises(TerminalError, match="justice_tap") as caught:
        list(demo_tap(write_register(tmp_path, [committee(1)])).fetch({}))
    assert not isinstance(caught.value, TransientError)
    assert "authentication failed" in str(caught.value)
    assert "wrong-token-123" not in str(caught.value)


def test_secrets_in_a_failing_taps_stderr_are_redacted(tmp_path: Path) -> None:
    tap = script_tap(tmp_path, """
        print("connecting with token " + config["token"], file=sys.stderr)
        sys.exit(3)
    """, conn_id="justice_tap")
    with pytest.raises(TransientError, match=r"code 3") as caught:
        list(tap.fetch({}))
    assert TOKEN not in str(caught.value)
    assert "connecting with token ***" in str(caught.value)


def test_config_and_state_files_are_private_and_removed(tmp_path: Path) -> None:
    tap = script_tap(tmp_path, """
        import os
        cfg = sys.argv[sys.argv.index('--config') + 1]
        st = sys.argv[sys.argv.index('--state') + 1]
        print(json.dumps({"type": "SCHEMA", "stream": "mediation_committees", "schema": {}, "key_properties": []}))
        record = {"id": "1", "config": cfg, "mode": oct(os.stat(cfg).st_mode & 0o777),
                  "state": json.load(open(st)), "token": config["token"], "source": config["source"]}
        print(json.dumps({"type": "RECORD", "stream": "mediation_committees", "record": record}))
    """, conn_id="justice_tap", config={"source": "x.json"})
    (payload,) = tap.fetch({"singer_state": {"bookmarks": {"a": 1}}})
    record = json.loads(payload.data)
    assert record["mode"] == "0o600"
    assert (record["state"], record["token"], record["source"]) == ({"bookmarks": {"a": 1}}, TOKEN, "x.json")
    assert not Path(record["config"]).exists()
    assert payload.cursor == {"singer_state": {"bookmarks": {"a": 1}}}  # no STATE: the incoming one


def test_records_after_the_last_state_carry_that_state(tmp_path: Path) -> None:
    tap = script_tap(tmp_path, """
        def out(m): print(json.dumps(m))
        out({"type": "SCHEMA", "stream": "mediation_committees", "schema": {"properties": {"id": {}}}})
        out({"type": "SCHEMA", "stream": "other", "schema": {}})
        out({"type": "RECORD", "stream": "mediation_committees", "record": {"id": "a"}})
        out({"type": "RECORD", "stream": "other", "record": {"id": "x"}})
        out({"type": "ACTIVATE_VERSION", "stream": "mediation_committees", "version": 1})
        out({"type": "STATE", "value": {"n": 1}})
        out({"type": "RECORD", "stream": "mediation_committees", "record": {"id": "b"}})
    """)
    first, second = tap.fetch({})
    assert (ids([first]), first.cursor) == (["a"], {"singer_state": {"n": 1}})
    assert (ids([second]), second.cursor) == (["b"], {"singer_state": {"n": 1}})


def test_a_tap_printing_garbage_is_refused_with_the_line_number(tmp_path: Path) -> None:
    tap = script_tap(tmp_path, """
        print(json.dumps({"type": "SCHEMA", "stream": "mediation_committees", "schema": {}}))
        print("Starting sync...")
    """)
    with pytest.raises(TerminalError, match=r"line 2 .*Starting sync"):
        list(tap.fetch({}))


def test_a_broken_record_line_is_refused_without_showing_it(tmp_path: Path) -> None:
    tap = script_tap(tmp_path, """
        print(json.dumps({"type": "SCHEMA", "stream": "mediation_committees", "schema": {}}))
        print('{"type": "RECORD", "stream": "mediation_committees", "record": {"id": "440304199001011233"')
    """)
    with pytest.raises(TerminalError, match="line 2 is not a JSON message") as caught:
        list(tap.fetch({}))
    assert "440304199001011233" not in str(caught.value)


def test_a_record_repeating_a_key_is_refused(tmp_path: Path) -> None:
    tap = script_tap(tmp_path, """
        print(json.dumps({"type": "SCHEMA", "stream": "mediation_committees", "schema": {}}))
        print('{"type": "RECORD", "stream": "mediation_committees", "record": {"id": "a", "id": "b"}}')
    """)
    with pytest.raises(TerminalError, match="line 2: a JSON object repeats the key 'id'"):
        list(tap.fetch({}))


def test_a_record_before_its_schema_is_refused(tmp_path: Path) -> None:
    tap = script_tap(tmp_path, """
        print(json.dumps({"type": "RECORD", "stream": "mediation_committees", "record": {"id": "a"}}))
    """)
    with pytest.raises(TerminalError, match="before its SCHEMA"):
        list(tap.fetch({}))


def test_a_schema_without_the_key_column_is_refused(tmp_path: Path) -> None:
    tap = script_tap(tmp_path, """
        print(json.dumps({"type": "SCHEMA", "stream": "mediation_committees",
                          "schema": {"properties": {"code": {}}}, "key_properties": ["code"]}))
    """)
    with pytest.raises(TerminalError, match=r"no property \['id'\]"):
        list(tap.fetch({}))


def test_a_tap_past_its_timeout_is_killed_and_retried(tmp_path: Path) -> None:
    tap = script_tap(tmp_path, "time.sleep(60)\n", timeout_seconds=0.5)
    with pytest.raises(TransientError, match="timeout_seconds"):
        list(tap.fetch({}))


def test_a_missing_tap_command_is_terminal(tmp_path: Path) -> None:
    source = SingerSource(kind="singer", command=[str(tmp_path / "no-such-tap")], stream=STREAM)
    with pytest.raises(TerminalError, match="cannot start"):
        list(SingerConnector(source, ("id",)).fetch({}))
