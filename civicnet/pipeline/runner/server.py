"""Airflow as a service on this machine: `civicnet airflow up|down|status` (`make airflow-up`).

The real components, each its own process (civicnet.pipeline.runner.processes), with the
environment every civicnet Airflow process gets (`airflow_env`) and these on top:

    metadata     a PostgreSQL database per home on the machine's server (created if missing;
                 `airflow db migrate`, then the single-writer pools: civicnet.pipeline.pools)
    api-server   the REST API, the UI and the tasks' execution API, on 127.0.0.1:<port> only
    scheduler, dag-processor, triggerer
    worker-N     `airflow celery worker`s (CeleryExecutor), each with its own Celery host name,
                 which its task instances record as their `hostname`
    broker       Redis (a db number and a key prefix per home); results in the metadata database

The JWT secret every component shares, the fernet key and the API's secret key are generated
once into `airflow/service/secrets.json` (owner-only) and handed to the processes in their
environment, never logged. No component serves logs on a port (those servers bind every
interface): on one machine the API server reads the task logs from the home's log folder.
`up` on a running service says what runs and changes nothing; `down` stops every process it
started and deletes its broker keys. A busy port, an unreachable PostgreSQL or Redis fail
before anything starts, naming the cause and the fix.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
import requests

from civicnet.pipeline.pools import pool_specs, pools_json
from civicnet.pipeline.runner import processes
from civicnet.pipeline.runner.env import airflow_env
from civicnet.pipeline.runner.hostname import CALLABLE, HOSTNAME_VARIABLE
from schemas.errors import TerminalError
from schemas.homefiles import make_folder, open_private, secret_modes, write_atomic
from schemas.layout import airflow_service_folder, airflow_service_secrets_file

HOST = "127.0.0.1"
DEFAULT_PORT, DEFAULT_WORKERS = 8080, 2
DEFAULT_POSTGRES, DEFAULT_REDIS = "postgresql://127.0.0.1:5432", "redis://127.0.0.1:6379/0"
START_TIMEOUT_S = 240.0
DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class ServiceError(TerminalError):
    """Airflow as a service could not be started, or its settings cannot work."""


class PortInUseError(ServiceError):
    """The API server's port is taken by another process."""


class MetadataUnreachableError(ServiceError):
    """The PostgreSQL server of the metadata database did not answer."""


class BrokerUnreachableError(ServiceError):
    """The Redis broker did not answer."""


@dataclass(frozen=True)
class ServiceConfig:
    """How to run the service on a home (the CLI's options; tests add fast intervals in `extra_env`)."""

    home: Path
    port: int = DEFAULT_PORT
    workers: int = DEFAULT_WORKERS
    concurrency: int = 2
    postgres: str = DEFAULT_POSTGRES  # the server, without a database: the home's is `database`
    database: str | None = None  # default: civicnet_airflow_<hash of the home's path>
    redis: str = DEFAULT_REDIS
    start_timeout: float = START_TIMEOUT_S
    stop_timeout: float = processes.STOP_TIMEOUT_S
    extra_env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Deployment:
    """What a started service uses, kept in `airflow/service/deployment.json` for status and down."""

    database: str
    postgres: str
    redis: str
    key_prefix: str
    port: int
    workers: int

    @property
    def url(self) -> str:
        """The API server's URL (UI, REST API, execution API)."""
        return f"http://{HOST}:{self.port}"

    def components(self) -> list[str]:
        """Every component's name, in start order."""
        return ["api-server", "scheduler", "dag-processor", "triggerer",
                *(f"worker-{i}" for i in range(1, self.workers + 1))]


@dataclass(frozen=True)
class ComponentState:
    """One component as `status` sees it."""

    name: str
    running: bool
    pid: int | None = None
    port: int | None = None
    log: str | None = None


def home_key(home: Path) -> str:
    """A short, stable name for a home (its database and broker keys), from its absolute path."""
    return hashlib.sha256(str(home.resolve()).encode("utf-8")).hexdigest()[:10]


def deployment_of(config: ServiceConfig) -> Deployment:
    """The deployment a config asks for on its home."""
    key = home_key(config.home)
    database = config.database or f"civicnet_airflow_{key}"
    if not DATABASE_NAME.match(database):
        raise ServiceError(f"database name {database!r} is not a plain PostgreSQL name: use lower-case letters, "
                           "digits and _ (at most 63)")
    if config.workers < 1:
        raise ServiceError(f"--workers {config.workers}: a CeleryExecutor needs at least one worker")
    return Deployment(database, config.postgres, config.redis, f"civicnet-airflow-{key}:", config.port, config.workers)


def deployment_file(home: Path) -> Path:
    return airflow_service_folder(home) / "deployment.json"


def read_deployment(home: Path) -> Deployment | None:
    """The deployment last started on this home, if any."""
    try:
        return Deployment(**json.loads(deployment_file(home).read_text("utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def run_folder(home: Path) -> Path:
    return airflow_service_folder(home) / "run"


def log_file(home: Path, name: str) -> Path:
    """Where a component (or `setup`: migrate and pools) writes its output."""
    return airflow_service_folder(home) / "logs" / f"{name}.log"


def metadata_url(deployment: Deployment, database: str | None = None) -> str:
    """The SQLAlchemy URL (psycopg 3) of the home's metadata database, or of another on its server."""
    from sqlalchemy.engine import make_url

    url = make_url(deployment.postgres).set(drivername="postgresql+psycopg", database=database or deployment.database)
    return url.render_as_string(hide_password=False)


def shown_postgres(deployment: Deployment) -> str:
    """The PostgreSQL server as a message may name it (no password)."""
    from sqlalchemy.engine import make_url

    return make_url(deployment.postgres).render_as_string(hide_password=True)


def service_secrets(home: Path) -> dict[str, str]:
    """The service's secrets, generated once into an owner-only file: never printed, never logged."""
    from cryptography.fernet import Fernet

    path = airflow_service_secrets_file(home)
    try:
        known = json.loads(path.read_text("utf-8"))
        if isinstance(known, dict) and {"jwt_secret", "fernet_key", "api_secret_key"} <= known.keys():
            return {k: str(v) for k, v in known.items()}
    except (OSError, ValueError):
        pass
    made = {"jwt_secret": secrets.token_urlsafe(48), "fernet_key": Fernet.generate_key().decode("ascii"),
            "api_secret_key": secrets.token_urlsafe(32)}
    make_folder(path.parent)
    write_atomic(path, json.dumps(made), modes=secret_modes(), durable=True)
    return made


def service_env(config: ServiceConfig, deployment: Deployment) -> dict[str, str]:
    """The environment of every component: airflow_env on PostgreSQL, Celery, the shared secrets."""
    url, kept = metadata_url(deployment), service_secrets(config.home)
    return airflow_env(config.home, metadata=url) | {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": url,  # psycopg 3 is sync and async (no asyncpg here)
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(deployment.port),
        "AIRFLOW__API__BASE_URL": deployment.url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{deployment.url}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": kept["jwt_secret"],
        "AIRFLOW__CORE__FERNET_KEY": kept["fernet_key"],
        "AIRFLOW__API__SECRET_KEY": kept["api_secret_key"],
        "AIRFLOW__CELERY__BROKER_URL": deployment.redis,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{url}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(config.concurrency),
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": deployment.key_prefix,
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "21600",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": CALLABLE,
    } | dict(config.extra_env)


def celery_hostname(name: str) -> str:
    """A worker's Celery host name, which its task instances record too."""
    return f"{name}@{socket.getfqdn()}"


def airflow_command() -> list[str]:
    """`airflow` as the service runs it, from this interpreter's environment."""
    return [sys.executable, "-m", "airflow"]


def component_argv(name: str, deployment: Deployment) -> list[str]:
    """The command of one component."""
    airflow = airflow_command()
    if name == "api-server":
        return [*airflow, "api-server", "--host", HOST, "--port", str(deployment.port)]
    if name.startswith("worker-"):
        return [*airflow, "celery", "worker", "--celery-hostname", celery_hostname(name), "--skip-serve-logs"]
    return [*airflow, name] + ([] if name == "dag-processor" else ["--skip-serve-logs"])


def states(home: Path) -> list[ComponentState]:
    """Every component of the home's deployment, running or not (empty: none was ever started)."""
    deployment = read_deployment(home)
    if deployment is None:
        return []
    found = []
    for name in deployment.components():
        record = processes.read_record(run_folder(home), name)
        running = record is not None and processes.is_running(record)
        found.append(ComponentState(name, running, record.pid if running and record else None,
                                    record.port if record else None, str(log_file(home, name))))
    return found


def check_port_free(port: int) -> None:
    """Fail fast if the API server's port on loopback is taken, naming who holds it."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
            return
        except OSError:
            pass
    holders = {c.pid for c in psutil.net_connections("tcp")
               if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid}
    who = ", ".join(f"{psutil.Process(p).name()} (pid {p})" for p in sorted(holders) if psutil.pid_exists(p))
    raise PortInUseError(f"port {port} on {HOST} is in use{' by ' + who if who else ''}: stop it, or start the "
                         "service on another port with --port")


def ensure_database(deployment: Deployment) -> bool:
    """Create the home's metadata database on the server if missing; whether it was created."""
    import psycopg
    from psycopg import sql

    admin = metadata_url(deployment, "postgres").replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        with psycopg.connect(admin, connect_timeout=5, autocommit=True) as con:
            if con.execute("SELECT 1 FROM pg_database WHERE datname = %s", (deployment.database,)).fetchone():
                return False
            con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(deployment.database)))
            return True
    except psycopg.OperationalError as err:
        cause = (str(err).strip().splitlines() or [type(err).__name__])[-1]
        raise MetadataUnreachableError(
            f"PostgreSQL at {shown_postgres(deployment)} did not answer ({cause}): start it (`bash "
            "infra/services.sh` on a test machine) or point --postgres at a reachable server") from None


def check_broker(deployment: Deployment) -> None:
    """Fail fast if the Redis broker does not answer."""
    import redis

    try:
        redis.Redis.from_url(deployment.redis, socket_connect_timeout=3, socket_timeout=3).ping()
    except redis.RedisError as err:
        raise BrokerUnreachableError(f"Redis at {deployment.redis} did not answer ({type(err).__name__}): start "
                                     "it (`redis-server`), or point --redis at a reachable broker") from None


def broker_keys(deployment: Deployment) -> list[str]:
    """The keys this deployment's Celery holds in its Redis database (its prefix)."""
    import redis

    client = redis.Redis.from_url(deployment.redis, socket_connect_timeout=3, socket_timeout=3)
    return sorted(k.decode("utf-8", "replace") for k in client.scan_iter(match=f"{deployment.key_prefix}*"))


def delete_broker_keys(deployment: Deployment) -> int:
    """Delete this deployment's keys from its Redis database (its bindings and queues); how many."""
    import redis

    client = redis.Redis.from_url(deployment.redis, socket_connect_timeout=3, socket_timeout=3)
    keys = list(client.scan_iter(match=f"{deployment.key_prefix}*"))
    return int(client.delete(*keys)) if keys else 0


def prepare_metadata(config: ServiceConfig, deployment: Deployment, env: dict[str, str]) -> None:
    """`airflow db migrate` and the pools (idempotent: an up on a migrated database changes nothing)."""
    log = log_file(config.home, "setup")
    listed = airflow_service_folder(config.home) / "pools.json"
    write_atomic(listed, pools_json(pool_specs()))
    for args in (["db", "migrate"], ["pools", "import", str(listed)]):
        make_folder(log.parent)
        with open_private(log, append=True) as out:
            done = subprocess.run([*airflow_command(), *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                  check=False, timeout=config.start_timeout)
        if done.returncode != 0:
            raise ServiceError(f"`airflow {' '.join(args)}` failed (exit {done.returncode}) on database "
                               f"{deployment.database}; see {log}")


def up(config: ServiceConfig) -> list[ComponentState]:
    """Start every component that is not running (all of them, the first time); wait until they are
    ready. On a running service, changes nothing."""
    running = [s for s in states(config.home) if s.running]
    wanted = read_deployment(config.home) if running else deployment_of(config)
    assert wanted is not None
    if running and len(running) == len(wanted.components()):
        return states(config.home)
    if not running:
        check_port_free(wanted.port)
    check_broker(wanted)
    ensure_database(wanted)
    make_folder(run_folder(config.home))
    write_atomic(deployment_file(config.home), json.dumps(asdict(wanted), indent=1))
    env = service_env(config, wanted)
    prepare_metadata(config, wanted, env)
    started = [_start(config.home, name, wanted, env) for name in wanted.components()
               if name not in {s.name for s in running}]
    try:
        wait_ready(wanted, started, time.monotonic() + config.start_timeout)
    except BaseException:
        _stop_records(config.home, started, config.stop_timeout)
        raise
    return states(config.home)


def _start(home: Path, name: str, deployment: Deployment, env: dict[str, str]) -> processes.ProcessRecord:
    extra = {HOSTNAME_VARIABLE: celery_hostname(name)} if name.startswith("worker-") else {}
    port = deployment.port if name == "api-server" else None
    return processes.start(run_folder(home), name, component_argv(name, deployment), env | extra,
                           log_file(home, name), port)


def wait_ready(deployment: Deployment, started: list[processes.ProcessRecord], deadline: float) -> None:
    """Wait until the API server reports every component healthy and each started worker is ready;
    fail at once, naming it and its log, if a component exits."""
    pending = list(started)
    while pending:
        for record in started:
            code = processes.exited(record)
            if code is not None:
                raise ServiceError(f"Airflow's {record.name} exited (code {code}) while starting; see {record.log}")
        pending = [r for r in pending if not _ready(r, deployment)]
        if pending and time.monotonic() > deadline:
            raise ServiceError(f"Airflow's {', '.join(r.name for r in pending)} did not become ready in time; "
                               f"see the logs in {Path(pending[0].log).parent}")
        time.sleep(2)


def _ready(record: processes.ProcessRecord, deployment: Deployment) -> bool:
    """Whether a component is ready: a worker when its log says `<hostname> ready.` (its consumer is
    up), the others when the API server reports them healthy."""
    if record.name.startswith("worker-"):
        try:
            return f"{celery_hostname(record.name)} ready." in Path(record.log).read_text("utf-8", errors="replace")
        except OSError:
            return False
    try:
        health = requests.get(f"{deployment.url}/api/v2/monitor/health", timeout=5).json()
    except (requests.RequestException, ValueError):
        return False
    key = {"api-server": "metadatabase", "dag-processor": "dag_processor"}.get(record.name, record.name)
    return isinstance(health, dict) and (health.get(key) or {}).get("status") == "healthy"


def _stop_records(home: Path, records: list[processes.ProcessRecord], timeout: float) -> None:
    for record in reversed(records):
        processes.stop(run_folder(home), record, timeout)


def down(home: Path, timeout: float = processes.STOP_TIMEOUT_S) -> list[str]:
    """Stop every component this home's service started (the scheduler first, the API server last)
    and delete its broker keys; the names of those that were running (none: nothing to stop)."""
    deployment = read_deployment(home)
    if deployment is None:
        return []
    order = ["scheduler", "dag-processor", "triggerer", *deployment.components()[4:], "api-server"]
    stopped = []
    for name in order:
        record = processes.read_record(run_folder(home), name)
        if record is not None and processes.stop(run_folder(home), record, timeout):
            stopped.append(name)
    import redis

    try:
        delete_broker_keys(deployment)
    except redis.RedisError as err:  # the processes are stopped; say what is left, and where
        raise BrokerUnreachableError(f"stopped {', '.join(stopped) or 'nothing'}, but the broker keys "
                                     f"{deployment.key_prefix}* in {deployment.redis} could not be deleted "
                                     f"({type(err).__name__}); start Redis and run `down` again") from None
    return stopped
