"""The deployment files (infra/compose, infra/helm, infra/systemd, infra/.env.example) agree with the code.

Docker and Kubernetes are not on the machine these files were written on: this test is what checks
them. Each file is parsed; every service, volume, secret and `depends_on` it names exists; every image
is pinned; every CIVICNET_* variable they set is one the code reads (civicnet.settings.ENVIRONMENT, the
one table, which the source is checked against too); every AIRFLOW__SECTION__KEY is an option of
Airflow's (or the Celery provider's) configuration; the ports are the code's defaults.
"""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from civicnet import cli
from civicnet.pipeline.pools import CITY_POOL, district_pool, pool_specs
from civicnet.settings import DEFAULT_AIRFLOW_URL, DEFAULT_GATEWAY_PORT, ENVIRONMENT

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
COMPOSE = INFRA / "compose" / "compose.yaml"
HELM = INFRA / "helm" / "values.yaml"
ENV_EXAMPLE = INFRA / ".env.example"
GATEWAY_UNIT = INFRA / "systemd" / "civicnet-gateway.service"
KNOWN = {s.name: s for s in ENVIRONMENT}
NAME = re.compile(r"\b(CIVICNET_[A-Z0-9_]+|AIRFLOW__[A-Z0-9_]+|AIRFLOW_VAR_[A-Z0-9_]+)\b")
INTERPOLATED = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")
# the Airflow variables the DAG tasks read (dags/task_policy.py)
TASK_VARIABLES = {"civicnet_home", "civicnet_share_group", "civicnet_landing_url", "civicnet_releases_url",
                  "civicnet_object_store_conn_id"}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text("utf-8"))
    return loaded


def env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text("utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{ENV_EXAMPLE}: {line!r} is not KEY=value"
            pairs[key.strip()] = value
    return pairs


def service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    return dict(env) if isinstance(env, dict) else dict(e.split("=", 1) for e in env)


def airflow_options() -> set[tuple[str, str]]:
    """Every (section, option) of Airflow's configuration and of the installed providers' (Celery's)."""
    import importlib.resources

    from airflow.providers.celery.get_provider_info import get_provider_info

    core = yaml.safe_load((importlib.resources.files("airflow") / "config_templates" / "config.yml").read_text())
    sections = dict(core) | dict(get_provider_info().get("config", {}))
    return {(section, option) for section, body in sections.items() for option in (body.get("options") or {})}


def test_every_civicnet_variable_the_source_reads_is_in_the_settings_table() -> None:
    sources = [p for folder in ("civicnet", "connectors", "quality", "warehouse", "schemas", "dags", "infra")
               for p in (REPO / folder).rglob("*") if p.suffix in (".py", ".sh", ".service") and p.is_file()]
    read = {m for p in sources for m in re.findall(r"\bCIVICNET_[A-Z0-9_]*[A-Z0-9]\b", p.read_text("utf-8"))}
    assert read - set(KNOWN) == set(), "add these to civicnet.settings.ENVIRONMENT"
    assert set(KNOWN) - read == set(), "the table names variables no code reads"


def test_every_variable_an_operator_sets_is_in_the_env_example_with_a_placeholder() -> None:
    example = env_example()
    missing = [s.name for s in ENVIRONMENT if s.operator and s.name not in example]
    assert missing == []
    for s in ENVIRONMENT:
        if s.secret and s.name in example:
            assert example[s.name].startswith("change-me"), f"{s.name} in .env.example is not a placeholder"
    for key, value in example.items():
        if "PASSWORD" in key or "SECRET" in key or "KEY" in key:
            assert value.startswith("change-me"), f"{key} in .env.example is not a placeholder"
    text = ENV_EXAMPLE.read_text("utf-8")
    for s in ENVIRONMENT:  # the ones a city operator sets say what they are in Chinese and English
        if s.operator:
            comment = text[:text.index(f"\n{s.name}=")].rsplit("\n", 1)[-1]
            assert re.search(r"[\u4e00-\u9fff]", comment) and re.search(r"[a-z]{3}", comment), s.name


def test_compose_names_only_what_it_declares() -> None:
    doc = compose()
    services, volumes, secrets = doc["services"], set(doc.get("volumes") or {}), set(doc.get("secrets") or {})
    assert {"postgres", "redis", "minio", "minio-init", "airflow-init", "airflow-apiserver", "airflow-scheduler",
            "airflow-dag-processor", "airflow-triggerer", "airflow-worker", "civicnet-gateway"} <= set(services)
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert set(depends) <= set(services), f"{name} depends on an undeclared service"
        assert name not in depends
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in volumes, f"{name} mounts the undeclared volume {source}"
        assert set(service.get("secrets") or []) <= secrets, f"{name} uses an undeclared secret"
    assert volumes <= {m.split(":", 1)[0] for s in services.values() for m in s.get("volumes") or []}
    assert services["airflow-worker"]["deploy"]["replicas"] == 2
    assert services["airflow-worker"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


@pytest.mark.parametrize("image", sorted({s["image"] for s in compose()["services"].values() if "image" in s}))
def test_compose_images_are_pinned(image: str) -> None:
    name, _, tag = image.rpartition(":")
    assert name and tag and tag != "latest" and re.search(r"\d", tag), f"{image} is not pinned to a version"


def test_the_image_is_the_official_airflow_of_the_lock() -> None:
    dockerfile = (INFRA / "compose" / "Dockerfile").read_text("utf-8")
    locked = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.lock").read_text(), re.M)
    assert locked is not None
    assert re.search(rf"^FROM apache/airflow:{re.escape(locked.group(1))}-python3\.\d+$", dockerfile, re.M)
    assert "--constraint /opt/civicnet/requirements.lock" in dockerfile
    build = compose()["x-airflow-common"]["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == INFRA / "compose" / "Dockerfile"


def test_ports_are_the_codes_defaults() -> None:
    services = compose()["services"]
    serve = cli.parser().parse_args(["gateway", "serve"])
    assert serve.port == DEFAULT_GATEWAY_PORT
    gateway = services["civicnet-gateway"]
    command = gateway["command"]
    assert command[command.index("--port") + 1] == str(DEFAULT_GATEWAY_PORT)
    assert gateway["ports"] == [f"127.0.0.1:{DEFAULT_GATEWAY_PORT}:{DEFAULT_GATEWAY_PORT}"]
    airflow_port = int(DEFAULT_AIRFLOW_URL.rsplit(":", 1)[1])
    assert services["airflow-apiserver"]["ports"] == [f"127.0.0.1:{airflow_port}:8080"]
    assert gateway["environment"]["CIVICNET_AIRFLOW_URL"] == "http://airflow-apiserver:8080"
    for service in services.values():  # published on the host's loopback only
        assert all(p.startswith("127.0.0.1:") for p in service.get("ports") or [])
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(GATEWAY_UNIT)
    assert f"--port {DEFAULT_GATEWAY_PORT}" in unit["Service"]["ExecStart"]


def variables_set() -> dict[str, set[str]]:
    """Every variable name each file sets or names."""
    return {str(path.relative_to(REPO)): set(NAME.findall(path.read_text("utf-8")))
            for path in (COMPOSE, HELM, ENV_EXAMPLE, GATEWAY_UNIT)}


def test_every_civicnet_variable_the_files_set_is_one_the_code_reads() -> None:
    for file, names in variables_set().items():
        civicnet = {n for n in names if n.startswith("CIVICNET_")}
        assert civicnet - set(KNOWN) == set(), f"{file} sets variables no code reads"


def test_every_airflow_variable_the_files_set_is_one_a_task_reads() -> None:
    tables = {s.airflow_variable for s in ENVIRONMENT if s.airflow_variable}
    assert tables == TASK_VARIABLES
    import importlib.util

    spec = importlib.util.spec_from_file_location("task_policy", REPO / "dags" / "task_policy.py")
    assert spec is not None and spec.loader is not None
    policy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(policy)
    assert set(policy.OBJECT_STORE_VARIABLES) <= TASK_VARIABLES
    source = (REPO / "dags" / "task_policy.py").read_text("utf-8")
    assert {v for v in TASK_VARIABLES if f'"{v}"' in source} == TASK_VARIABLES  # each one read by the tasks
    for file, names in variables_set().items():
        variables = {n.removeprefix("AIRFLOW_VAR_").lower() for n in names if n.startswith("AIRFLOW_VAR_")}
        assert variables <= TASK_VARIABLES, f"{file} sets Airflow variables no task reads"


def test_every_airflow_option_the_files_set_exists() -> None:
    options = airflow_options()
    for file, names in variables_set().items():
        for name in (n for n in names if n.startswith("AIRFLOW__")):
            section, _, option = name.removeprefix("AIRFLOW__").partition("__")
            assert (section.lower(), option.lower()) in options, f"{file}: {name} is no Airflow option"
    for section, body in yaml.safe_load(HELM.read_text("utf-8"))["config"].items():
        for option in body:
            assert (section, option) in options, f"{HELM}: config.{section}.{option} is no Airflow option"


def test_interpolated_values_are_in_the_env_example() -> None:
    example = env_example()
    used = set(INTERPOLATED.findall(COMPOSE.read_text("utf-8")))
    assert used - set(example) == set()
    assert "$" not in "".join(example.values())


def test_compose_init_makes_the_pools_the_dags_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Both inits import what `civicnet airflow pools` prints, which is every pool the DAGs use (the
    city's and one per district), and runs without a home."""
    doc = compose()
    init = " ".join(doc["services"]["airflow-init"]["command"])
    helm = yaml.safe_load(HELM.read_text("utf-8"))
    imported = re.compile(r"civicnet (?:--home \S+ )?airflow pools > (\S+) && airflow pools import \1")
    for command in (init, " ".join(helm["migrateDatabaseJob"]["args"])):
        assert imported.search(command) and "airflow db migrate &&" in command
    assert cli.main(["--home", str(tmp_path / "none"), "airflow", "pools"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {p.name for p in pool_specs()} and {CITY_POOL, district_pool("440304000000")} <= set(printed)
    assert all(p["slots"] == 1 for p in printed.values()) and not (tmp_path / "none").exists()
    assert "exec airflow db migrate &&" not in " ".join(helm["migrateDatabaseJob"]["args"])  # exec would end it
    assert CITY_POOL in (REPO / "dags" / "ingest.py").read_text("utf-8")


# the chart's value names used here, as read in apache/airflow chart/values.yaml and values.schema.json
# (the schema is Apache-2.0 but 650 kB: not pinned in this repository; these names are checked instead)
CHART_KEYS = {"defaultAirflowRepository", "defaultAirflowTag", "airflowVersion", "images", "executor",
              "postgresql", "redis", "data", "fernetKeySecretName", "jwtSecretName", "env", "secret", "config",
              "workers", "migrateDatabaseJob", "createUserJob", "triggerer", "dagProcessor", "volumes",
              "volumeMounts"}


def test_helm_values_use_the_charts_names_and_the_codes_settings() -> None:
    values = yaml.safe_load(HELM.read_text("utf-8"))
    assert set(values) <= CHART_KEYS
    assert values["executor"] == "CeleryExecutor"
    assert values["postgresql"]["enabled"] is False and values["redis"]["enabled"] is False
    assert set(values["data"]) == {"metadataSecretName", "brokerUrlSecretName"}
    assert values["images"]["airflow"]["tag"] == values["defaultAirflowTag"] != "latest"
    assert values["airflowVersion"] == re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.lock").read_text(),
                                                 re.M).group(1)  # type: ignore[union-attr]
    assert all(set(e) == {"name", "value"} for e in values["env"])
    assert all(set(s) == {"envName", "secretName", "secretKey"} for s in values["secret"])
    assert values["workers"]["replicas"] == 2


def test_every_airflow_pod_mounts_the_shared_home_claim() -> None:
    values = yaml.safe_load(HELM.read_text("utf-8"))
    claim = yaml.safe_load((INFRA / "helm" / "civicnet-home-pvc.yaml").read_text("utf-8"))
    assert claim["kind"] == "PersistentVolumeClaim" and claim["spec"]["accessModes"] == ["ReadWriteMany"]
    volume = next(v for v in values["volumes"] if v["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"])
    mount = next(m for m in values["volumeMounts"] if m["name"] == volume["name"])
    home = next(e["value"] for e in values["env"] if e["name"] == "AIRFLOW_VAR_CIVICNET_HOME")
    assert mount["mountPath"] == home


def test_the_gateway_unit_is_hardened() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(GATEWAY_UNIT)
    service = unit["Service"]
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["User"] == "civicnet" and service["User"] != "root"
    assert service["EnvironmentFile"].startswith("/etc/civicnet/")
    assert service["UMask"] == "0077"  # what it writes is the owner's only, as schemas/homefiles.py writes
    assert "gateway serve" in service["ExecStart"] and "--trigger airflow" in service["ExecStart"]
    assert "--host 127.0.0.1" in service["ExecStart"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
