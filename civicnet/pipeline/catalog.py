"""`civicnet feeds` and `civicnet datasets`: the feeds and dataset contracts this installation ships,
as records (for --json) and as an aligned text table."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import TypedDict

from connectors.feeds import load_feeds
from schemas.contract import load_contracts

FEED_HEADER = ("feed", "department", "dataset", "connector", "schedule")
DATASET_HEADER = ("dataset", "title", "owner", "tiers", "version")
ON_PUSH = "on-push"  # a push feed's DAG runs when the gateway lands a batch
UNSCHEDULED = "manual"  # any other feed without a schedule runs when someone triggers it


class FeedRecord(TypedDict):
    """One feed as `civicnet feeds --json` prints it."""

    slug: str
    department: str
    dataset: str
    connector: str
    schedule: str | None


class DatasetRecord(TypedDict):
    """One dataset contract as `civicnet datasets --json` prints it."""

    slug: str
    title: str
    owner: str
    tiers: list[str]
    version: str


def feed_records() -> list[FeedRecord]:
    """Every shipped feed, by slug."""
    return [FeedRecord(slug=f.slug, department=f.department, dataset=f.dataset, connector=f.connector.kind,
                       schedule=f.schedule) for f in sorted(load_feeds().values(), key=lambda f: f.slug)]


def dataset_records() -> list[DatasetRecord]:
    """Every shipped dataset contract, by slug."""
    return [DatasetRecord(slug=c.name, title=c.title, owner=c.owner, tiers=list(c.reaches), version=c.version)
            for c in sorted(load_contracts().values(), key=lambda c: c.name)]


def feeds_table(records: list[FeedRecord]) -> str:
    """The feeds as a text table."""
    rows = [(r["slug"], r["department"], r["dataset"], r["connector"],
             r["schedule"] or (ON_PUSH if r["connector"] == "push" else UNSCHEDULED)) for r in records]
    return render_table(FEED_HEADER, rows)


def datasets_table(records: list[DatasetRecord]) -> str:
    """The dataset contracts as a text table (tiers: where the contract lets the rows go)."""
    rows = [(r["slug"], r["title"], r["owner"], ",".join(r["tiers"]), r["version"]) for r in records]
    return render_table(DATASET_HEADER, rows)


def display_width(text: str) -> int:
    """Columns a terminal gives `text`: Chinese characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart, padded by display width."""
    widths = [max(display_width(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(cell + " " * (w - display_width(cell)) for cell, w in zip(line, widths, strict=True)).rstrip()
             for line in (header, *rows)]
    return "\n".join(lines)
