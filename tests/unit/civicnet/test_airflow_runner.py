"""The environment every Airflow process of a home gets, and how `civicnet airflow` serves it."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from civicnet.cli import parser
from civicnet.pipeline.runner import airflow_env, generated_credentials, standalone_env

VENV_AIRFLOW = Path(sys.executable).parent / "airflow"


def test_airflow_env_finds_the_venvs_airflow_without_an_activated_venv(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # systemd and cron start the script with a PATH that has no .venv/bin, and `airflow standalone`
    # starts its scheduler, DAG processor, API server and triggerer as `airflow ...` from PATH
    monkeypatch.setenv("PATH", "/usr/bin:/bin")

    found = shutil.which("airflow", path=airflow_env(tmp_path)["PATH"])

    assert found is not None and Path(found) == VENV_AIRFLOW


def test_standalone_serves_on_loopback_unless_told(tmp_path: Path) -> None:
    env = standalone_env(tmp_path)
    wide = standalone_env(tmp_path, "0.0.0.0", 9000)

    assert (env["AIRFLOW__API__HOST"], env["AIRFLOW__API__PORT"]) == ("127.0.0.1", "8080")
    assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:8080"  # the tasks' execution API
    assert (wide["AIRFLOW__API__HOST"], wide["AIRFLOW__API__BASE_URL"]) == ("0.0.0.0", "http://127.0.0.1:9000")
    assert env["AIRFLOW_VAR_CIVICNET_HOME"] == str(tmp_path)


def test_civicnet_airflow_defaults_to_loopback_port_8080() -> None:
    args = parser().parse_args(["airflow", "--home", "h"])

    assert (args.command, args.host, args.port, args.home) == ("airflow", "127.0.0.1", 8080, "h")


def test_generated_credentials_are_the_admin_password_standalone_wrote(tmp_path: Path) -> None:
    assert generated_credentials(tmp_path) is None
    (tmp_path / "airflow").mkdir()
    path = tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated"
    path.write_text("not json")
    assert generated_credentials(tmp_path) is None
    path.write_text(json.dumps({"admin": "pw-123"}))
    assert generated_credentials(tmp_path) == ("admin", "pw-123")
