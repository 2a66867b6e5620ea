"""Feed configuration: which connector, with which parameters, feeds which dataset. Config, not code."""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.engine import make_url

from schemas.contract import Contract, load_contracts
from schemas.errors import TerminalError
from schemas.rights import Permit, Writer, WriteRefusedError, writable_scope


class FeedConfigError(TerminalError):
    """A feed configuration file is malformed."""


def _check_encoding(value: str) -> str:
    if value == "auto":
        return value
    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(f"unknown encoding {value!r}; use 'auto' or a Python codec name such as gb18030 or "
                         "utf-8") from None
    return value


class FilesSource(BaseModel):
    """A folder (local path or fsspec URL) that a department drops files into."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["files"]
    path: str
    pattern: str = "*"
    # auto: by file extension (.csv, .xlsx, .parquet, .jsonl/.ndjson)
    format: Literal["auto", "csv", "xlsx", "parquet", "jsonl"] = "auto"
    # auto: detected per file (BOM, UTF-8, then GB18030, of which GBK is a subset)
    encoding: str = "auto"
    # a file modified less than this many seconds ago may still be being written: taken next pull
    settle_seconds: float = Field(default=5.0, ge=0)

    _encoding = field_validator("encoding")(_check_encoding)

    def partial_delivery(self) -> str | None:
        """Why a batch of this source holds only part of the register (None: each file may be whole)."""
        return None


class SqlSource(BaseModel):
    """A table in a department database, read through SQLAlchemy.

    Without `cursor` every pull reads the whole table (a snapshot; identical content lands once).
    With `cursor` (a timestamp or increasing number column) a pull reads rows at or after the
    watermark minus `lag_seconds`, skipping rows already taken unchanged."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["sql"]
    # a URL without a password (sqlite:///..., postgresql+psycopg://host/db), or conn_id
    url: str | None = None
    conn_id: str | None = None
    table: str
    db_schema: str | None = None
    cursor: str | None = None
    lag_seconds: float = Field(default=0, ge=0)
    chunk_rows: int = Field(default=50_000, gt=0)

    @model_validator(mode="after")
    def _one_location(self) -> SqlSource:
        if (self.url is None) == (self.conn_id is None):
            raise ValueError("give exactly one of 'url' (no password in it) or 'conn_id' (an Airflow connection)")
        if self.url is not None and make_url(self.url).password is not None:
            raise ValueError("'url' holds a password: put the credentials in an Airflow connection and use "
                             "'conn_id'")
        return self

    def partial_delivery(self) -> str | None:
        """Why a batch of this source holds only part of the register (None: a snapshot of the table)."""
        if self.cursor is None:
            return None
        return (f"its connector reads only the rows edited since the last pull (cursor: {self.cursor}); to read "
                "the whole table every pull, remove 'cursor'")


class Pagination(BaseModel):
    """How a REST API splits a result into pages."""

    model_config = ConfigDict(extra="forbid")
    style: Literal["none", "page", "offset", "cursor", "link"] = "none"
    size: int = Field(default=500, gt=0)
    size_param: str = "page_size"
    page_param: str = "page"  # style page: 1, 2, 3, ...
    offset_param: str = "offset"  # style offset: 0, size, 2*size, ...
    cursor_param: str = "cursor"  # style cursor: the token the last page returned ...
    next_cursor: str = "next_cursor"  # ... under this key of the response body


class RestCursor(BaseModel):
    """Incremental pulls: ask for records updated since the watermark (inclusive)."""

    model_config = ConfigDict(extra="forbid")
    param: str = "updated_since"
    field: str = "updated_at"
    lag_seconds: float = Field(default=0, ge=0)


class RestSource(BaseModel):
    """A department's HTTP JSON API, authenticated with an Airflow connection."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["rest"]
    conn_id: str
    path: str
    records: str = "data"  # key of the record list in the body ('' when the body is the list)
    params: dict[str, str] = {}
    pagination: Pagination = Pagination()
    cursor: RestCursor | None = None
    timeout_seconds: float = Field(default=30, gt=0)
    max_retries: int = Field(default=5, ge=0)
    backoff_seconds: float = Field(default=1.0, ge=0)

    def partial_delivery(self) -> str | None:
        """Why a batch of this source holds only part of the register (None: every page, every pull)."""
        if self.cursor is None:
            return None
        return (f"its connector asks only for the records updated since the last pull (cursor: {self.cursor.field}); "
                "to read every record every pull, remove 'cursor'")


class SingerSource(BaseModel):
    """A Singer tap run as a subprocess; `{python}` in the command is this interpreter.

    `replication` follows the Singer spec's replication methods: `incremental` (the default) hands
    the tap its saved state, so it sends only the records at or after its bookmark; `full_table`
    starts the tap without state every pull and lands everything it sends as one batch."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["singer"]
    command: list[str]
    stream: str
    config: dict[str, Any] = {}
    conn_id: str | None = None  # secrets merged into the tap config from an Airflow connection
    timeout_seconds: float = Field(default=3600, gt=0)
    replication: Literal["incremental", "full_table"] = "incremental"

    def partial_delivery(self) -> str | None:
        """Why a batch of this source holds only part of the register (None: a full-table sync)."""
        if self.replication == "full_table":
            return None
        return ("its tap is run from its saved bookmark and sends only what changed (replication: incremental); "
                "to sync the whole stream every pull, set 'replication: full_table'")


class PushSource(BaseModel):
    """Batches arrive through the push gateway; a pull only takes what has landed."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["push"]
    # who may send: the contract's owner department, and/or community work stations (own rows only)
    senders: list[Permit] = ["owner"]
    max_bytes: int = Field(default=64 << 20, gt=0)

    def partial_delivery(self) -> str | None:
        """Why a batch of this source holds only part of the register (None: the owner sends it whole)."""
        if "community" not in self.senders:
            return None
        return ("community work stations push to it, each only its own community's rows (senders: community); "
                "only the owner department can send a whole register")


Source = Annotated[FilesSource | SqlSource | RestSource | SingerSource | PushSource, Field(discriminator="kind")]


class Feed(BaseModel):
    """One feed: a connector bound to one dataset, with its field mapping."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    slug: str
    department: str
    dataset: str
    schedule: str | None = None
    connector: Source
    fields: dict[str, str]
    values: dict[str, dict[str, str]] = {}
    dates: dict[str, str] = {}
    constants: dict[str, Any] = {}
    # source columns deliberately not carried into the contract (say so, or the batch is refused)
    ignore: list[str] = []
    # a source column that marks a row deleted (soft delete): a row whose value is set and not
    # false/0/no is a tombstone for its key, never an upsert
    deleted: str | None = None
    # `full`: every batch is the whole register (the volume gate compares it with the feed's
    # recent batches and refuses a collapse); `changes`: batches carry only what changed
    delivery: Literal["full", "changes"] = "changes"

    @model_validator(mode="after")
    def _whole_register_only(self) -> Feed:
        """`delivery: full` only where every batch can be the whole register: the volume gate compares
        each batch with the feed's recent ones and would refuse every batch of changes as a collapse."""
        why = self.connector.partial_delivery() if self.delivery == "full" else None
        if why is not None:
            raise ValueError(
                f"feed {self.slug!r} is declared 'delivery: full' (every batch the whole register), but {why}. "
                "The volume gate would refuse its batches of changes as truncated exports: remove "
                "'delivery: full' from the feed config (batches then carry changes), or make the connector "
                "deliver the whole register")
        return self

    def resolve(self, template: str, home: Path) -> str:
        """Fill `{home}` in a connector parameter."""
        return template.replace("{home}", str(home))


def load_feed(path: Path) -> Feed:
    """Load and validate one feed file; errors name the file and the key."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        feed = Feed.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as err:
        raise FeedConfigError(f"feed config {path} is invalid: {err}") from None
    if feed.slug != path.stem:
        raise FeedConfigError(f"feed config {path}: slug {feed.slug!r} must equal the file name")
    return feed


def check_owner(feed: Feed, contract: Contract, shown: str) -> None:
    """Refuse a feed whose department may not write its dataset (only the contract's owner may);
    `shown` is how the message names the feed file."""
    try:
        writable_scope(contract, Writer(feed.slug, "department", feed.department))
    except WriteRefusedError:
        raise FeedConfigError(
            f"feed config {shown}: department {feed.department!r} feeds dataset {feed.dataset!r}, but the "
            f"dataset's contract ({contract.source}) names {contract.owner!r} as its owner, and only the owner "
            f"department may write a dataset. Set 'department: {contract.owner}' if {contract.owner!r} runs this "
            f"feed; otherwise remove the feed, or have {feed.department!r} send its rows to {contract.owner!r}"
        ) from None


def load_feeds(folder: Path | None = None, contracts: Mapping[str, Contract] | None = None) -> dict[str, Feed]:
    """All feeds in a folder (default: the shipped connectors/feeds), by slug, each checked against
    its dataset's contract (default: the shipped contracts): a feed of a dataset without a contract,
    or of a department that does not own its dataset (`check_owner`), is refused."""
    base = folder if folder is not None else Path(str(resources.files("connectors") / "feeds"))
    known = contracts if contracts is not None else load_contracts()
    feeds = {}
    for path in sorted(base.glob("*.yaml")):
        feed = load_feed(path)
        if feed.dataset not in known:
            raise FeedConfigError(f"feed config {path}: dataset {feed.dataset!r} has no contract (known datasets: "
                                  f"{', '.join(sorted(known))}); fix 'dataset', or add the dataset's contract under "
                                  "schemas/datasets/")
        check_owner(feed, known[feed.dataset], str(path))
        feeds[feed.slug] = feed
    return feeds
