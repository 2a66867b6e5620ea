"""Demo department feeds: the synthetic drops the demo loads, and a report of the planted bad rows.

`generate_feeds` writes, under `<home>/feeds`, the public-security residents CSV (GB18030), the
civil-affairs facility table (SQLite), the statistics division reference, and `planted.json`.
`generate_changes` then writes a second residents drop in which some residents move.
Paths in the report are relative to `<home>/feeds`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from civicnet.demo.changes import draw_changes, pick_changed_rows, read_residents
from civicnet.demo.defects import REASONS, patch, plant_defects, sorted_edits
from civicnet.demo.departments.facilities import write_facilities
from civicnet.demo.departments.residents import (
    Array,
    CommunityTable,
    Population,
    Rng,
    build_population,
    community_table,
    render_fields,
)
from schemas.divisions import load_registry
from schemas.homefiles import make_folder
from schemas.layout import feeds_folder

VINTAGE = 2020
RESIDENTS_FEED = "public_security_residents.yaml"
RESIDENTS_DIR = Path("public_security/residents")
INITIAL_FILE = "residents_0001_initial.csv"
FACILITIES_FILE = Path("civil_affairs/facilities.sqlite")
DIVISIONS_FILE = Path(f"statistics/divisions/shenzhen_divisions_{VINTAGE}.csv")
REPORT_FILE = "planted.json"
CHUNK_ROWS = 200_000


@dataclass(frozen=True)
class ResidentsFeed:
    """What the feed config says the file looks like."""

    columns: dict[str, str]  # source column → contract field, in file order
    labels: dict[str, dict[str, str]]  # contract field → contract value → source text


def load_residents_feed() -> ResidentsFeed:
    """Read the residents feed config shipped in connectors/feeds."""
    ref = resources.files("connectors") / "feeds" / RESIDENTS_FEED
    config = yaml.safe_load(ref.read_text(encoding="utf-8"))
    values = config["values"]
    labels = {field: {v: k for k, v in values[field].items()} for field in values}
    return ResidentsFeed(dict(config["fields"]), labels)


def generate_feeds(home: Path, scale: float, seed: int = 20050222) -> dict[str, Any]:
    """Write all demo feeds under home/feeds and return the planted-bad-row report.

    The report is also written to home/feeds/planted.json.
    """
    feeds = make_folder(feeds_folder(Path(home)))  # the home too, if new: owner-only (or the share group's)
    feed = load_residents_feed()
    table = community_table(load_registry(VINTAGE))
    resident_rng, facility_rng = np.random.default_rng(seed).spawn(2)
    report: dict[str, Any] = {
        "scale": scale,
        "seed": seed,
        "residents": write_initial_residents(feeds, feed, table, scale, resident_rng),
        "facilities": write_facilities(feeds / FACILITIES_FILE, table, facility_rng),
    }
    copy_division_reference(feeds / DIVISIONS_FILE)
    write_report(feeds, report)
    return report


def generate_changes(
    home: Path,
    fraction: float = 0.01,
    seed: int = 20050223,
    name: str = "residents_0002_changes.csv",
) -> dict[str, Any]:
    """Write a second residents drop changing `fraction` of the residents in the initial drop.

    Returns its report, also merged into planted.json under the key 'residents_changes'.
    """
    feeds = feeds_folder(Path(home))
    report = json.loads((feeds / REPORT_FILE).read_text(encoding="utf-8"))
    feed = load_residents_feed()
    initial = read_residents(feeds / report["residents"]["file"], list(feed.columns))
    rng = np.random.default_rng(seed)
    skip = np.array([r["line"] - 1 for r in report["residents"]["planted_rows"]], dtype=np.int64)
    picked = pick_changed_rows(initial.num_rows, skip, fraction, rng)
    chosen = {
        field: np.array(initial.column(source).take(picked).to_pylist(), dtype=object)
        for source, field in feed.columns.items()
    }
    changes = draw_changes(chosen, community_table(load_registry(VINTAGE)), rng)
    path = feeds / RESIDENTS_DIR / name
    columns = [changes.fields[field].tolist() for field in feed.columns.values()]
    write_gb18030_csv(path, list(feed.columns), [columns])
    summary = {
        "file": path.relative_to(feeds).as_posix(),
        "rows": int(picked.size),
        "moved": changes.fields["citizen_id"][changes.moved].tolist(),
        "updated": int((~changes.moved).sum()),
    }
    write_report(feeds, {**report, "residents_changes": summary})
    return summary


def write_initial_residents(
    feeds: Path, feed: ResidentsFeed, table: CommunityTable, scale: float, rng: Rng
) -> dict[str, Any]:
    """Draw the population, plant the bad rows, write the CSV; return the residents report."""
    pop = build_population(table, scale, rng)
    planting = plant_defects(pop, table, feed.labels, rng)
    path = feeds / RESIDENTS_DIR / INITIAL_FILE
    chunks = population_chunks(pop, table, feed, sorted_edits(planting.edits))
    write_gb18030_csv(path, list(feed.columns), chunks)
    counts = Counter(row["reason"] for row in planting.planted_rows)
    return {
        "file": path.relative_to(feeds).as_posix(),
        "rows": int(pop.comm.size),
        "planted": {reason: counts[reason] for reason in REASONS},
        "planted_rows": planting.planted_rows,
        "rare_character_lines": sorted((planting.rare_rows + 1).tolist()),
    }


def population_chunks(
    pop: Population,
    table: CommunityTable,
    feed: ResidentsFeed,
    edits: dict[str, tuple[Array, Array]],
) -> Iterator[list[list[str]]]:
    """The file's columns of text, CHUNK_ROWS rows at a time, planted rows patched in."""
    n = pop.comm.size
    for start in range(0, n, CHUNK_ROWS):
        rows = np.arange(start, min(n, start + CHUNK_ROWS))
        values = render_fields(pop, table, rows, feed.labels)
        yield [patch(values[f], edits.get(f), start).tolist() for f in feed.columns.values()]


def write_gb18030_csv(path: Path, header: Sequence[str], chunks: Iterable[list[list[str]]]) -> None:
    """Write a header and chunks of text columns as GB18030 CSV.

    No value quoting: the demo vocabularies hold no comma, quote or line break. The file is written
    as `<name>.part` and renamed when complete, the drop protocol departments are asked to follow
    (the file connector never reads a `.part` file).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    with part.open("wb") as fh:
        fh.write((",".join(header) + "\n").encode("gb18030"))
        for columns in chunks:
            if columns and columns[0]:
                lines = map(",".join, zip(*columns, strict=True))
                fh.write(("\n".join(lines) + "\n").encode("gb18030"))
    part.replace(path)


def copy_division_reference(target: Path) -> None:
    """Byte copy of the shipped division reference, as the statistics bureau would drop it."""
    source = resources.files("schemas") / "reference" / target.name
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    part.write_bytes(source.read_bytes())
    part.replace(target)


def write_report(feeds: Path, report: dict[str, Any]) -> None:
    """planted.json: UTF-8, readable Chinese, indented."""
    feeds.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, ensure_ascii=False, indent=2)
    (feeds / REPORT_FILE).write_text(text + "\n", encoding="utf-8")
