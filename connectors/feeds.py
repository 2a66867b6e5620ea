"""Feed configuration: which connector, with which parameters, feeds which dataset. Config, not code."""

from __future__ import annotations

import codecs
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from schemas.errors import TerminalError


class FeedConfigError(TerminalError):
    """A feed configuration file is malformed."""


class FilesSource(BaseModel):
    """A folder that a department drops files into."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["files"]
    path: str
    pattern: str = "*"
    format: Literal["csv"] = "csv"
    encoding: str = "utf-8"

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}; use a Python codec name such as gb18030 or utf-8") from None
        return value


class SqlSource(BaseModel):
    """A table in a department database, read through SQLAlchemy."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["sql"]
    url: str
    table: str


class Feed(BaseModel):
    """One feed: a connector bound to one dataset, with its field mapping."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    slug: str
    department: str
    dataset: str
    schedule: str | None = None
    connector: FilesSource | SqlSource
    fields: dict[str, str]
    values: dict[str, dict[str, str]] = {}
    dates: dict[str, str] = {}
    constants: dict[str, Any] = {}
    # source columns deliberately not carried into the contract (say so, or the batch is refused)
    ignore: list[str] = []

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


def load_feeds(folder: Path | None = None) -> dict[str, Feed]:
    """All feeds in a folder (default: the shipped connectors/feeds), by slug."""
    base = folder if folder is not None else Path(str(resources.files("connectors") / "feeds"))
    return {f.slug: f for f in (load_feed(p) for p in sorted(base.glob("*.yaml")))}
