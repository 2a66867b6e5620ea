"""Build the connector a feed config names."""

from __future__ import annotations

from pathlib import Path

from connectors.feeds import Feed, FilesSource
from connectors.files import FilesConnector
from connectors.payload import Connector
from connectors.sql import SqlConnector


def connector_for(feed: Feed, home: Path) -> Connector:
    """The connector of a feed, with `{home}` filled in."""
    src = feed.connector
    if isinstance(src, FilesSource):
        return FilesConnector(Path(feed.resolve(src.path, home)), src.pattern, src.format, src.encoding)
    return SqlConnector(feed.resolve(src.url, home), src.table)
