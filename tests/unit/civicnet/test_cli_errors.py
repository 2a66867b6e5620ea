"""Contradictory flags are refused, saying which flag applies to what; every error is one line on
stderr with a non-zero exit, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from civicnet.cli import main
from civicnet.context import registry
from civicnet.pipeline import runner as airflow_runner
from connectors.push.senders import SenderError, add_sender, list_senders

COMMUNITY = registry().by_tier("community")[0].code


@pytest.fixture
def home(tmp_path: Path) -> Path:
    assert main(["init", "--home", str(tmp_path / "home")]) == 0
    return tmp_path / "home"


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_a_community_sender_refuses_a_department(tmp_path: Path) -> None:
    with pytest.raises(SenderError, match="--department applies to a department sender") as caught:
        add_sender(tmp_path, "station", "community", "civil_affairs", COMMUNITY)

    assert "community:" in str(caught.value) and "--division" in str(caught.value)
    assert list_senders(tmp_path) == []


@pytest.mark.parametrize(("flags", "says"), [
    (["--kind", "community", "--department", "civil_affairs", "--division", COMMUNITY],
     "--department applies to a department sender"),
    (["--kind", "department", "--department", "civil_affairs", "--division", COMMUNITY],
     "--division applies to a community sender"),
], ids=["community-with-department", "department-with-division"])
def test_cli_add_sender_refuses_flags_of_the_other_kind(home: Path, flags: list[str], says: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["gateway", "add-sender", "--home", str(home), "--id", "s", *flags])

    assert code == 2
    assert says in one_error_line(capsys.readouterr().err)
    assert list_senders(home) == []


def test_the_readme_adds_a_community_sender_the_cli_accepts(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text("utf-8")
    command = readme.split("civicnet gateway add-sender", 1)[1].split("#", 1)[0]
    argv = command.replace("\\\n", " ").replace("--home var", f"--home {home}").split()

    assert main(["gateway", "add-sender", *argv]) == 0, capsys.readouterr().err
    (sender,) = list_senders(home)
    assert sender.kind == "community"


def test_push_wait_without_report_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a\n1\n", "utf-8")

    code = main(["push", "--dataset", "community_expenditures", "--file", str(path), "--token", "t",
                 "--gateway", "http://127.0.0.1:9", "--wait", "10"])

    assert code == 2
    assert "--wait applies only with --report" in one_error_line(capsys.readouterr().err)


def test_sync_workers_with_districts_is_refused(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sync", "--home", str(home), "--district", "440304000000", "--workers", "4"])

    assert code == 2
    assert "--workers applies to a sync of every district" in one_error_line(capsys.readouterr().err)
    assert not (home / "nodes").exists()


def test_a_failed_dag_is_one_line_naming_its_log(home: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    log = home / "airflow" / "logs" / "ingest_public_security_residents.log"

    def failed(_home: Path, dag_id: str) -> Path:  # Airflow's tail: a traceback
        raise airflow_runner.DagRunFailedError(
            f"DAG {dag_id} failed (exit 1); see {log}:\nTraceback (most recent call last):\n  File x\nKeyError: 1")

    monkeypatch.setattr(airflow_runner, "run_dag", failed)

    code = main(["ingest", "public_security_residents", "--home", str(home)])

    line = one_error_line(capsys.readouterr().err)
    assert code == 2
    assert line.startswith("civicnet: DAG ingest_public_security_residents failed") and str(log) in line


def test_an_os_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("", "utf-8")

    code = main(["init", "--home", str(tmp_path / "file" / "home")])

    assert code != 0
    assert str(tmp_path / "file") in one_error_line(capsys.readouterr().err)
