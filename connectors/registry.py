"""Build the connector a feed config names: every kind takes its source config and the key."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from connectors.feeds import Feed, FeedConfigError, FilesSource, PushSource, RestSource, SingerSource, SqlSource
from connectors.payload import Connector, Payload
from schemas.contract import load_contracts


class PushConnector:
    """A push feed has nothing to pull: the gateway lands its batches as they arrive."""

    def fetch(self, state: Mapping[str, Any]) -> Iterator[Payload]:
        """Nothing: the ingest run takes the pushed batches already in landing."""
        return iter(())


def source_key(feed: Feed) -> tuple[str, ...]:
    """The source columns that carry the dataset's primary key (for key dedupe at cursor boundaries)."""
    contract = load_contracts()[feed.dataset]
    by_field = {target: source for source, target in feed.fields.items()}
    missing = [k for k in contract.primary_key if k not in by_field]
    if missing:
        raise FeedConfigError(f"feed {feed.slug!r} maps no source column to key field(s) {missing} of "
                              f"{contract.source}; add them to 'fields'")
    return tuple(by_field[k] for k in contract.primary_key)


def connector_for(feed: Feed, home: Path) -> Connector:
    """The connector of a feed, with `{home}` filled in (each kind's module imported only when used)."""
    src = feed.connector
    key = source_key(feed)
    if isinstance(src, FilesSource):
        from connectors.files import FilesConnector

        return FilesConnector(src.model_copy(update={"path": feed.resolve(src.path, home)}), key)
    if isinstance(src, SqlSource):
        from connectors.sql import SqlConnector

        url = None if src.url is None else feed.resolve(src.url, home)
        return SqlConnector(src.model_copy(update={"url": url}), key)
    if isinstance(src, RestSource):
        from connectors.rest import RestConnector

        return RestConnector(src, key)
    if isinstance(src, SingerSource):
        from connectors.singer import SingerConnector

        command = [feed.resolve(part, home) for part in src.command]
        config = {k: feed.resolve(v, home) if isinstance(v, str) else v for k, v in src.config.items()}
        return SingerConnector(src.model_copy(update={"command": command, "config": config}), key)
    assert isinstance(src, PushSource)
    return PushConnector()
