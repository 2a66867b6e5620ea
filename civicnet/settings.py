"""Settings for the CLI and tests: the one place (besides DAG tasks) that reads the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from schemas.errors import TerminalError
from schemas.homefiles import OWNER_ONLY, Modes, secure_home, shared, use_modes
from schemas.layout import SECRET_FILES

DEFAULT_HOME = "var"
DEFAULT_AIRFLOW_URL = "http://127.0.0.1:8080"  # where `civicnet airflow` serves Airflow's API and UI
SHARE_GROUP_ENV = "CIVICNET_SHARE_GROUP"
LANDING_URL_ENV = "CIVICNET_LANDING_URL"
RELEASES_URL_ENV = "CIVICNET_RELEASES_URL"
OBJECT_STORE_CONN_ENV = "CIVICNET_OBJECT_STORE_CONN_ID"
DEFAULT_GATEWAY_PORT = 8765  # `civicnet gateway serve --port`, and the push client's default gateway


class EmptyHomeError(TerminalError):
    """--home was given as an empty string (often an unset shell variable)."""


@dataclass(frozen=True)
class Settings:
    """Where civicnet keeps its state, who besides its owner may read it, and how the gateway reaches
    Airflow's API (the password is kept out of repr, so it never reaches a log)."""

    home: Path
    # a group whose members (analysts) may read the home: files 0640, folders 0750; None: owner-only
    share_group: str | None = None
    airflow_url: str = DEFAULT_AIRFLOW_URL
    airflow_username: str | None = None
    airflow_password: str | None = field(default=None, repr=False)
    # server mode: landing and published releases in object storage (fsspec URLs, s3://bucket/prefix);
    # None: <home>/landing, and the extracts only in <home>/extracts, as in the embedded default
    landing_url: str | None = None
    releases_url: str | None = None
    # the Airflow connection (AIRFLOW_CONN_<ID>, or Airflow's own in a task) holding the object store's
    # endpoint and keys; None: the AWS variables botocore reads itself (AWS_ACCESS_KEY_ID, ...)
    object_store_conn_id: str | None = None

    @classmethod
    def from_env(cls, home: str | os.PathLike[str] | None = None, share_group: str | None = None) -> Settings:
        """`home` if given, else $CIVICNET_HOME (unless empty), else ./var (always absolute); the share
        group if given, else $CIVICNET_SHARE_GROUP, else none; Airflow's API from $CIVICNET_AIRFLOW_URL,
        $CIVICNET_AIRFLOW_USERNAME and $CIVICNET_AIRFLOW_PASSWORD.

        An empty `home` is refused rather than taken as the current folder: `--home "$TYPO"`
        must not make a home of wherever the shell happens to be."""
        if home is not None and not str(home).strip():
            raise EmptyHomeError("--home is empty (an unset shell variable?); give the path of a civicnet home, "
                                 f"or leave --home out for $CIVICNET_HOME or ./{DEFAULT_HOME}")
        chosen = home if home is not None else (os.environ.get("CIVICNET_HOME") or DEFAULT_HOME)
        group = share_group if share_group is not None else os.environ.get(SHARE_GROUP_ENV) or None
        return cls(home=Path(chosen).resolve(), share_group=group,
                   airflow_url=os.environ.get("CIVICNET_AIRFLOW_URL") or DEFAULT_AIRFLOW_URL,
                   airflow_username=os.environ.get("CIVICNET_AIRFLOW_USERNAME") or None,
                   airflow_password=os.environ.get("CIVICNET_AIRFLOW_PASSWORD") or None,
                   landing_url=os.environ.get(LANDING_URL_ENV) or None,
                   releases_url=os.environ.get(RELEASES_URL_ENV) or None,
                   object_store_conn_id=os.environ.get(OBJECT_STORE_CONN_ENV) or None)

    def file_modes(self) -> Modes:
        """The modes of what civicnet writes under the home."""
        return shared(self.share_group) if self.share_group else OWNER_ONLY

    def apply_file_modes(self) -> Modes:
        """Make this process write the home with `file_modes` (umask included), and bring an existing
        home to them (a home written world-readable by an older civicnet is closed here)."""
        modes = self.file_modes()
        use_modes(modes)
        secure_home(self.home, modes, SECRET_FILES)
        return modes


@dataclass(frozen=True)
class EnvSetting:
    """One environment variable civicnet reads: the table the deployment files are checked against
    (tests/unit/test_infra_files.py), so a name in compose, Helm or a unit that no code reads fails."""

    name: str
    purpose: str  # for the operator, English
    purpose_zh: str  # 中文说明
    operator: bool  # a deployment sets it (infra/.env.example lists it); False: tests, demo, development
    airflow_variable: str | None = None  # the Airflow variable DAG tasks read for the same setting
    secret: bool = False  # a placeholder only in example files, never a real value


ENVIRONMENT: tuple[EnvSetting, ...] = (
    EnvSetting(
        "CIVICNET_HOME",
        "the civicnet home (state, nodes, extracts)",
        "civicnet 主目录（状态、节点、数据提取文件）",
        True,
        "civicnet_home",
    ),
    EnvSetting(
        SHARE_GROUP_ENV,
        "a group that may read the home (analysts)",
        "可读取主目录的用户组（分析人员）",
        True,
        "civicnet_share_group",
    ),
    EnvSetting(
        "CIVICNET_AIRFLOW_URL",
        "Airflow's API server, for the gateway's trigger",
        "Airflow API 服务地址（网关触发用）",
        True,
    ),
    EnvSetting(
        "CIVICNET_AIRFLOW_USERNAME",
        "the Airflow user the gateway posts asset events as (op or admin role)",
        "网关发送资产事件所用的 Airflow 用户（op 或 admin 角色）",
        True,
    ),
    EnvSetting("CIVICNET_AIRFLOW_PASSWORD", "that user's password", "该用户的密码", True, secret=True),
    EnvSetting(
        LANDING_URL_ENV,
        "where landing lives: an fsspec URL such as s3://bucket/landing (unset: <home>/landing)",
        "落地区位置：fsspec URL，如 s3://bucket/landing（不设置则为 <home>/landing）",
        True,
        "civicnet_landing_url",
    ),
    EnvSetting(
        RELEASES_URL_ENV,
        "where published extracts are mirrored, such as s3://bucket/releases (unset: not mirrored)",
        "发布文件镜像位置，如 s3://bucket/releases（不设置则不镜像）",
        True,
        "civicnet_releases_url",
    ),
    EnvSetting(
        OBJECT_STORE_CONN_ENV,
        "the Airflow connection with the object store's endpoint and keys (unset: the AWS_* variables)",
        "保存对象存储地址与密钥的 Airflow 连接 ID（不设置则用 AWS_* 变量）",
        True,
        "civicnet_object_store_conn_id",
    ),
    EnvSetting(
        "CIVICNET_AIRFLOW_HOST",
        "the address infra/embedded/airflow-standalone.sh serves Airflow on",
        "嵌入式 Airflow 监听地址（airflow-standalone.sh）",
        False,
    ),
    EnvSetting("CIVICNET_DAGS_FOLDER", "civicnet's DAG files, if not the installed ones", "DAG 文件目录（默认安装包）",
               False),
    EnvSetting("CIVICNET_TOKEN", "a push sender's token (push client)", "推送客户端的发送方令牌", False, secret=True),
    EnvSetting("CIVICNET_GATEWAY", "the push gateway's URL (push client)", "推送网关地址（推送客户端）", False),
    EnvSetting(
        "CIVICNET_LANG",
        "the language of the push client's messages (zh-CN or en)",
        "推送客户端消息语言（zh-CN 或 en）",
        False,
    ),
    EnvSetting(
        "CIVICNET_DEMO_API_TOKEN",
        "the demo's simulated department API token",
        "演示用模拟部门接口令牌",
        False,
        secret=True,
    ),
    EnvSetting(
        "CIVICNET_AIRFLOW_POSTGRES",
        "the PostgreSQL server `civicnet airflow up` keeps Airflow's metadata database on",
        "`civicnet airflow up` 存放 Airflow 元数据库的 PostgreSQL 服务器",
        False,
    ),
    EnvSetting(
        "CIVICNET_AIRFLOW_REDIS",
        "the Redis broker (with its db number) of `civicnet airflow up`'s Celery workers",
        "`civicnet airflow up` 的 Celery 工作进程所用 Redis 消息代理（含库号）",
        False,
    ),
    EnvSetting(
        "CIVICNET_AIRFLOW_HOSTNAME",
        "the name a Celery worker reports (set by `civicnet airflow up`, one per worker)",
        "Celery 工作进程上报的名称（由 `civicnet airflow up` 为每个进程设置）",
        False,
    ),
    EnvSetting(
        "CIVICNET_DUCKDB14_PYTHON",
        "an interpreter with DuckDB 1.4, for the extract compatibility check",
        "带 DuckDB 1.4 的解释器（提取文件兼容性检查）",
        False,
    ),
)
