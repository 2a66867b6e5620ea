"""A civicnet home: commands that need one refuse a path that is not a home, create nothing there,
and say how to make one; `init`, `demo` and `ingest` are the commands that make one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from civicnet import context
from civicnet.cli import main
from civicnet.pipeline.home import is_home

# every command that reads or changes an existing home (arguments after the command name)
NEEDS_A_HOME = {
    "status": ["status"],
    "status-json": ["status", "--json"],
    "sync": ["sync"],
    "sync-district": ["sync", "--district", "440304000000"],
    "verify": ["verify"],
    "verify-repair": ["verify", "--repair"],
    "report": ["report"],
    "quarantine-close": ["quarantine-close", "--batch", "b", "--line", "1", "--why", "w"],
    "gateway-serve": ["gateway", "serve", "--trigger", "none"],
    "gateway-senders": ["gateway", "senders"],
    "gateway-add-sender": ["gateway", "add-sender", "--id", "ca", "--kind", "department",
                           "--department", "civil_affairs"],
    "gateway-revoke-sender": ["gateway", "revoke-sender", "--id", "ca"],
}


def listing(folder: Path) -> list[str]:
    """Every path under a folder, relative to it."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def one_error_line(err: str) -> str:
    """The one line a refused command writes to stderr (no traceback, no second line)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("argv", NEEDS_A_HOME.values(), ids=NEEDS_A_HOME.keys())
def test_a_missing_home_is_refused_and_not_created(argv: list[str], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "typo"

    code = main([*argv, "--home", str(home)])

    line = one_error_line(capsys.readouterr().err)
    assert code != 0
    assert f"no civicnet home at {home}" in line
    assert f"civicnet demo --home {home}" in line and "civicnet ingest" in line and "civicnet init" in line
    assert not home.exists()


@pytest.mark.parametrize("argv", NEEDS_A_HOME.values(), ids=NEEDS_A_HOME.keys())
def test_a_folder_that_is_not_a_home_is_refused_and_left_alone(argv: list[str], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("someone else's folder\n", "utf-8")
    before = listing(tmp_path)

    code = main(["--home", str(tmp_path), *argv])

    assert code != 0
    assert f"no civicnet home at {tmp_path}" in one_error_line(capsys.readouterr().err)
    assert listing(tmp_path) == before


def test_init_makes_an_empty_home_that_status_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "new"

    assert main(["init", "--home", str(home)]) == 0
    assert str(home) in capsys.readouterr().out
    assert is_home(home)
    assert main(["status", "--json", "--home", str(home)]) == 0

    status = json.loads(capsys.readouterr().out)
    assert status["home"] == str(home.resolve())
    assert (status["nodes"], status["batches"], status["quarantine"]) == ([], [], {})


def test_init_twice_keeps_the_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--home", str(tmp_path / "h")]) == 0
    assert main(["gateway", "add-sender", "--home", str(tmp_path / "h"), "--id", "ca", "--kind", "department",
                 "--department", "civil_affairs"]) == 0
    assert main(["init", "--home", str(tmp_path / "h")]) == 0

    assert "already a civicnet home" in capsys.readouterr().out
    assert main(["gateway", "senders", "--home", str(tmp_path / "h")]) == 0
    assert capsys.readouterr().out.startswith("ca\tdepartment\tcivil_affairs")


def test_init_refuses_a_folder_holding_other_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("someone else's folder\n", "utf-8")

    assert main(["init", "--home", str(tmp_path)]) != 0

    assert "not empty" in one_error_line(capsys.readouterr().err)
    assert listing(tmp_path) == ["notes.txt"]


def test_a_home_made_by_the_pipeline_is_a_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A home whose city node the pipeline created (tests, DAG tasks, homes older than the marker)."""
    context.open_city(tmp_path).close()

    assert is_home(tmp_path)
    assert main(["status", "--home", str(tmp_path)]) == 0
    assert f"civicnet home {tmp_path}" in capsys.readouterr().out


def test_the_home_from_the_environment_is_checked_too(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVICNET_HOME", str(tmp_path / "typo"))

    assert main(["status"]) != 0

    assert f"no civicnet home at {tmp_path / 'typo'}" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "typo").exists()


def test_an_unknown_feed_lists_the_known_ones_and_creates_nothing(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "new"

    code = main(["ingest", "no_such_feed", "--home", str(home)])

    line = one_error_line(capsys.readouterr().err)
    assert code != 0
    assert "no feed 'no_such_feed'" in line
    assert all(slug in line for slug in context.load_feeds())
    assert "civicnet feeds" in line
    assert not home.exists()


def test_an_empty_home_flag_is_refused_not_taken_as_the_current_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`--home "$UNSET"` must not put a demo into whatever folder the shell is in."""
    monkeypatch.chdir(tmp_path)

    assert main(["init", "--home", ""]) == 2

    assert "--home is empty" in one_error_line(capsys.readouterr().err)
    assert listing(tmp_path) == []


def test_an_empty_civicnet_home_variable_means_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from civicnet.settings import Settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CIVICNET_HOME", "")

    assert Settings.from_env().home == tmp_path.resolve() / "var"
