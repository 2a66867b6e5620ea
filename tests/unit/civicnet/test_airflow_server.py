"""Airflow as a service, without starting it: its settings, secrets and the fast failures of `up`."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import pytest

from civicnet.cli import main
from civicnet.pipeline.home import create_home
from civicnet.pipeline.runner import server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    create_home(tmp_path / "home", "test")
    return tmp_path / "home"


def test_the_environment_runs_celery_on_postgresql_with_the_shared_secrets(home: Path) -> None:
    config = server.ServiceConfig(home, port=18555, redis="redis://127.0.0.1:6379/7")
    deployment = server.deployment_of(config)
    env = server.service_env(config, deployment)
    kept = json.loads((home / "airflow" / "service" / "secrets.json").read_text("utf-8"))

    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"postgresql+psycopg://127.0.0.1:5432/{deployment.database}"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/7"
    assert env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX"] == deployment.key_prefix
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18555/execution/"
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == kept["jwt_secret"] and len(kept["jwt_secret"]) >= 32
    assert env["AIRFLOW__CORE__FERNET_KEY"] == kept["fernet_key"]
    assert env["AIRFLOW_VAR_CIVICNET_HOME"] == str(home)  # the embedded settings still apply
    assert stat.S_IMODE((home / "airflow" / "service" / "secrets.json").stat().st_mode) == 0o600


def test_secrets_are_generated_once_per_home(home: Path, tmp_path: Path) -> None:
    first, again = server.service_secrets(home), server.service_secrets(home)
    create_home(tmp_path / "other", "test")

    assert first == again
    assert server.service_secrets(tmp_path / "other")["jwt_secret"] != first["jwt_secret"]


def test_each_home_has_its_own_database_and_broker_keys(home: Path, tmp_path: Path) -> None:
    create_home(tmp_path / "other", "test")
    one, two = (server.deployment_of(server.ServiceConfig(h)) for h in (home, tmp_path / "other"))

    assert one.database != two.database and one.key_prefix != two.key_prefix
    assert one.database.startswith("civicnet_airflow_")
    assert one.components() == ["api-server", "scheduler", "dag-processor", "triggerer", "worker-1", "worker-2"]


@pytest.mark.parametrize("name", ["Robert'); DROP", "a" * 64, "Upper"], ids=["quote", "long", "upper"])
def test_a_database_name_is_a_plain_name_only(home: Path, name: str) -> None:
    with pytest.raises(server.ServiceError, match="plain PostgreSQL name"):
        server.deployment_of(server.ServiceConfig(home, database=name))


def test_the_workers_record_distinct_celery_host_names(home: Path) -> None:
    deployment = server.deployment_of(server.ServiceConfig(home))
    workers = [server.component_argv(n, deployment) for n in deployment.components() if n.startswith("worker-")]
    names = [argv[argv.index("--celery-hostname") + 1] for argv in workers]

    assert len(set(names)) == 2 and all(n.startswith(("worker-1@", "worker-2@")) for n in names)
    assert all("--skip-serve-logs" in argv for argv in workers)  # no log server on every interface


def up_fails(home: Path, capsys: pytest.CaptureFixture[str], *options: str) -> str:
    code = main(["--home", str(home), "airflow", "up", *options])
    err = capsys.readouterr().err
    assert code == 2, err
    assert not list((home / "airflow" / "service").glob("run/*.json"))  # nothing was started
    return err


def test_up_on_a_busy_port_fails_fast_naming_it_and_the_fix(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = up_fails(home, capsys, "--port", str(port))
    assert f"port {port} on 127.0.0.1 is in use" in err and "--port" in err


def test_up_with_postgresql_unreachable_fails_fast(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = up_fails(home, capsys, "--port", str(free_port()), "--postgres", f"postgresql://127.0.0.1:{free_port()}")
    assert "PostgreSQL at postgresql://127.0.0.1:" in err and "did not answer" in err and "--postgres" in err


def test_up_with_redis_unreachable_fails_fast(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = up_fails(home, capsys, "--port", str(free_port()), "--redis", f"redis://127.0.0.1:{free_port()}/0")
    assert "Redis at redis://127.0.0.1:" in err and "did not answer" in err and "--redis" in err


def test_a_password_in_the_postgres_url_is_never_shown(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = up_fails(home, capsys, "--port", str(free_port()),
                   "--postgres", f"postgresql://civicnet:s3cret-pw@127.0.0.1:{free_port()}")
    assert "s3cret-pw" not in err and "***" in err


def test_down_and_status_on_a_home_without_a_service(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(home), "airflow", "down"]) == 0
    assert "no Airflow service runs on" in capsys.readouterr().out
    assert main(["--home", str(home), "airflow", "status"]) == 1
    assert "no Airflow service was started on this home" in capsys.readouterr().out
