"""The gateway's Airflow trigger when Airflow cannot be told: the failure is retried, then recorded
in the batch's status (without Airflow's address), and no credential reaches a log or a message."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from civicnet.gateway.airflow_api import AirflowApi, AirflowApiSettings
from civicnet.gateway.trigger import AirflowApiTrigger, airflow_api_settings, make_trigger
from civicnet.settings import Settings

PASSWORD = "pw-never-shown-42"


def closed_port() -> int:
    """A loopback port nothing listens on (Airflow down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_post_to_an_airflow_that_is_down_is_retried_then_recorded(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    trigger = AirflowApiTrigger(AirflowApi(AirflowApiSettings(url, "gateway", PASSWORD, timeout=2)),
                                retry_pause=0.01)
    with caplog.at_level(logging.DEBUG):
        trigger("community_expenditures", "b" * 64)
        assert trigger.wait_idle(30)

    error = trigger.last_error("b" * 64)
    assert error is not None and "Airflow could not be told (AirflowUnavailableError" in error
    assert url not in error  # a remote sender reads the status: where Airflow runs is the operator's
    assert any(url in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2  # 3 attempts
    assert PASSWORD not in error and all(PASSWORD not in r.getMessage() for r in caplog.records)


def test_settings_and_api_settings_keep_the_password_out_of_repr(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVICNET_AIRFLOW_USERNAME", "gateway")
    monkeypatch.setenv("CIVICNET_AIRFLOW_PASSWORD", PASSWORD)
    settings = Settings.from_env(tmp_path)
    api = airflow_api_settings(settings, "http://127.0.0.1:9")

    assert (api.url, api.username, api.password) == ("http://127.0.0.1:9", "gateway", PASSWORD)
    assert PASSWORD not in repr(settings) and PASSWORD not in repr(api)


def test_without_credentials_the_gateway_uses_the_homes_generated_admin(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIVICNET_AIRFLOW_USERNAME", raising=False)
    monkeypatch.delenv("CIVICNET_AIRFLOW_PASSWORD", raising=False)
    monkeypatch.delenv("CIVICNET_AIRFLOW_URL", raising=False)
    (tmp_path / "airflow").mkdir()
    (tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated").write_text('{"admin": "gen-pw"}')
    api = airflow_api_settings(Settings.from_env(tmp_path))

    assert (api.url, api.username, api.password) == ("http://127.0.0.1:8080", "admin", "gen-pw")
    assert isinstance(make_trigger("airflow", tmp_path, api), AirflowApiTrigger)


def test_gateway_serve_takes_the_airflow_url() -> None:
    from civicnet.cli import parser

    args = parser().parse_args(["gateway", "serve", "--trigger", "airflow", "--airflow-url", "http://af:8080"])
    local = parser().parse_args(["gateway", "serve", "--trigger", "dags-test"])

    assert (args.trigger, args.airflow_url) == ("airflow", "http://af:8080")
    assert (local.trigger, local.airflow_url) == ("dags-test", None)
