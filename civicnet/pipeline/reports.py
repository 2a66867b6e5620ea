"""What the city owes its senders and operators after a run: the rejection reports the ledger says
are owed, GX Data Docs and the quality page.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb

from civicnet.context import city_code, city_replica, contracts, open_city, source_mapping
from connectors.feeds import load_feeds
from quality.rejection import build_report, write_outbox
from schemas.contract import load_contracts
from warehouse import landing
from warehouse.merge import (
    owed_reports,
    settle_report,
)
from warehouse.stores import store_of


def write_owed(con: duckdb.DuckDBPyConnection, home: Path, slug: str | None) -> list[str]:
    """Write the rejection reports the city ledger says are owed (of one feed, or all), each settled
    once written; returns their batch ids. A clean batch's report step writes nothing and settles it."""
    done = []
    owed = owed_reports(con, "city", slug)
    feeds, contracts_ = (load_feeds(), load_contracts()) if owed else ({}, {})  # read once, not per batch
    for batch_id in owed:
        (dataset, feed_slug), = con.execute("SELECT dataset, feed FROM city._civicnet.batches WHERE batch_id = ?",
                                            [batch_id]).fetchall()
        manifest = landing.read_manifest(home, dataset, batch_id)
        known = feeds.get(feed_slug)
        mapping = source_mapping(known) if known else None
        write_outbox(home, build_report(con, "city", batch_id, manifest, mapping, contracts_.get(dataset)))
        settle_report(con, "city", batch_id, replica=city_replica(home))
        done.append(batch_id)
    return done


def write_owed_reports(home: Path) -> list[str]:
    """Write every rejection report still owed (`civicnet report` and each network run do); their batch ids."""
    if not store_of(home, city_code()).exists():
        return []
    con = open_city(home, read_only=True)  # most runs owe nothing: do not take the writer's lock for that
    try:
        if not owed_reports(con, "city"):
            return []
    finally:
        con.close()
    con = open_city(home)
    try:
        return write_owed(con, home, None)
    finally:
        con.close()


def publish_quality_report(home: Path, run_id: str | None = None, lang: str = "zh_CN") -> dict[str, str]:
    """Rebuild GX Data Docs and write this run's quality page; returns both paths.

    Every Data Docs rebuild re-reads every batch's results: seconds, so this runs once per network
    run, not per batch."""
    from zoneinfo import ZoneInfo

    from civicnet.pipeline.status import quality_page
    from quality.docs import build_data_docs

    write_owed_reports(home)  # reports a killed merge left unwritten
    today = dt.datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    docs = build_data_docs(home, contracts(), today, lang)
    return {"data_docs": str(docs), "quality_page": str(quality_page(home, run_id, lang=lang))}
