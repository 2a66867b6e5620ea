"""The command line: what the parser accepts and how main reports civicnet errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from civicnet.cli import main, parser


@pytest.mark.parametrize(("argv", "expected"), [
    (["demo", "--scale", "0.01", "--home", "X"], {"command": "demo", "scale": 0.01, "home": "X"}),
    (["--home", "X", "demo"], {"command": "demo", "scale": 0.002, "home": "X"}),
    (["status", "--json"], {"command": "status", "json": True}),
    (["status"], {"command": "status", "json": False}),
    (["sync", "--district", "440304000000"], {"command": "sync", "district": ["440304000000"]}),
    (["sync", "--district", "440304000000", "--district", "440305000000"],
     {"command": "sync", "district": ["440304000000", "440305000000"]}),
    (["sync"], {"command": "sync", "district": None}),
    (["ingest", "public_security_residents"], {"command": "ingest", "feed": "public_security_residents"}),
], ids=["demo-scale-home", "home-before-command", "status-json", "status-text", "sync-one",
        "sync-two", "sync-all", "ingest"])
def test_parser_accepts(argv: list[str], expected: dict[str, object]) -> None:
    args = vars(parser().parse_args(argv))
    assert {k: args.get(k) for k in expected} == expected


def test_district_codes_stay_strings() -> None:
    args = parser().parse_args(["sync", "--district", "440304000000"])
    assert all(isinstance(code, str) for code in args.district)


@pytest.mark.parametrize("argv", [[], ["demo", "--scale", "tiny"], ["launch"]],
                         ids=["no-command", "bad-scale", "unknown-command"])
def test_parser_refuses(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parser().parse_args(argv)
    assert caught.value.code == 2
    assert "usage: civicnet" in capsys.readouterr().err


def test_civicnet_error_exits_2_with_a_message(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    (feeds / "planted.json").write_text(json.dumps({"scale": 0.5}), "utf-8")

    code = main(["demo", "--scale", "0.01", "--home", str(tmp_path)])

    err = capsys.readouterr().err
    messages = [line for line in err.splitlines() if line.startswith("civicnet: ")]
    assert code == 2
    assert len(messages) == 1
    assert "scale 0.5, not 0.01" in messages[0]
    assert "Traceback" not in err
    assert not (tmp_path / "airflow").exists()  # refused before any DAG ran


def test_status_json_on_an_empty_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--home", str(tmp_path)]) == 0  # a folder that is not a home is refused
    capsys.readouterr()

    code = main(["status", "--json", "--home", str(tmp_path)])

    status = json.loads(capsys.readouterr().out)
    assert code == 0
    assert status["home"] == str(tmp_path.resolve())
    assert (status["nodes"], status["batches"], status["quarantine"]) == ([], [], {})
