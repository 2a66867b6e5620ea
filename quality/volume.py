"""Recent batch volumes per feed, for the volume gate (a whole-register delivery that collapses).

`<home>/quality/volumes/<feed>.json` lists the received row counts of the feed's last applied
batches, newest last. The check task reads it without touching any node (so it never waits on a
merge's lock); the merge task appends to it once a batch is applied.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from schemas.homefiles import make_folder, write_atomic
from schemas.layout import volumes_file

RECENT = 5


def recent(home: Path, feed: str) -> list[dict[str, object]]:
    """The feed's last applied batches: [{batch_id, received}], oldest first."""
    path = volumes_file(home, feed)
    entries: list[dict[str, object]] = json.loads(path.read_text("utf-8")) if path.exists() else []
    return entries


def volume_ratio(home: Path, feed: str, received: int) -> float | None:
    """This batch's rows over the median of the feed's recent applied batches (None: no history)."""
    counts = [int(str(e["received"])) for e in recent(home, feed)]
    if not counts:
        return None
    median = statistics.median(counts)
    return received / median if median else None


def record(home: Path, feed: str, batch_id: str, received: int) -> None:
    """Remember an applied batch's size (idempotent: a batch already listed is not added twice)."""
    entries = [e for e in recent(home, feed) if e["batch_id"] != batch_id]
    entries = ([*entries, {"batch_id": batch_id, "received": received}])[-RECENT:]
    path = volumes_file(home, feed)
    write_atomic(make_folder(path.parent) / path.name, json.dumps(entries))
