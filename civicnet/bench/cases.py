"""The bench's work cases and their input drops, made once before the first case runs.

Cases run in this order on the same homes, each side taking the state the case before left:
  full    the initial load: divisions, residents and facilities through every tier;
  idle    a run with no new input (every feed pulled, nothing new);
  change1 a drop changing 1 % of the residents, half of them moving;
  change10 a drop changing 10 % of them, half of them moving;
  move1   a drop of one resident moving to a community in another district.
Every drop is generated into <out>/parked and put into the pipeline home's feeds folder just before
its case; both baselines and the peer read the same file there.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.layout import feeds_folder

RESIDENTS_DIR = Path("public_security/residents")  # as civicnet.demo.data writes it


@dataclass(frozen=True)
class Case:
    """One work case: its name, what the table calls it, and the residents drop it brings."""

    name: str
    title: str
    drop: str | None  # file name under RESIDENTS_DIR; None for the initial load and the idle run


CASES = (
    Case("full", "full initial load", None),
    Case("idle", "no new input", None),
    Case("change1", "1 % change", "residents_0002_change1.csv"),
    Case("change10", "10 % change", "residents_0003_change10.csv"),
    Case("move1", "single move", "residents_0004_move1.csv"),
)
CASE_NAMES = tuple(c.name for c in CASES)


def case(name: str) -> Case:
    return next(c for c in CASES if c.name == name)


def parked(out: Path) -> Path:
    return out / "parked"


def residents_dir(out: Path) -> Path:
    """Where the pipeline's residents feed (and so both baselines and the peer) read drops."""
    return feeds_folder(out / "pipeline") / RESIDENTS_DIR


def prepare(out: Path, scale: float, names: tuple[str, ...]) -> dict[str, Any]:
    """Generate the feeds into the pipeline home and park every later case's drop; returns what
    each drop holds (also in <out>/cases.json)."""
    from civicnet.demo.data import generate_changes, generate_feeds  # numpy: only the prepare child

    shutil.rmtree(out, ignore_errors=True)
    home = out / "pipeline"
    report = generate_feeds(home, scale)
    drops: dict[str, Any] = {"full": {"rows": report["residents"]["rows"]}, "idle": {"rows": 0}}
    folder = residents_dir(out)
    parked(out).mkdir(parents=True)
    for name, fraction in (("change1", 0.01), ("change10", 0.10)):
        if name in names:
            drop = case(name).drop or ""
            summary = generate_changes(home, fraction=fraction, name=drop)
            drops[name] = {"rows": summary["rows"], "moved": len(summary["moved"])}
            shutil.move(folder / drop, parked(out) / drop)
    if "move1" in names:
        drops["move1"] = write_single_move(home, parked(out) / (case("move1").drop or ""))
    (out / "cases.json").write_text(json.dumps(drops, indent=1))
    return drops


def bring_drop(out: Path, name: str) -> None:
    """Put a case's drop where the residents feed reads it (the initial drop is there already)."""
    drop = case(name).drop
    if drop is not None:
        shutil.copy(parked(out) / drop, residents_dir(out) / drop)


def write_single_move(home: Path, path: Path, seed: int = 20050224) -> dict[str, Any]:
    """One good resident of the initial drop, untouched by the other drops, moved to a community
    of another district (a new address and household there)."""
    import numpy as np

    from civicnet.demo.changes import draw_changes, read_residents
    from civicnet.demo.data import REPORT_FILE, VINTAGE, load_residents_feed, write_gb18030_csv
    from civicnet.demo.departments.residents import community_table
    from schemas.divisions import load_registry

    feeds = feeds_folder(home)
    report = json.loads((feeds / REPORT_FILE).read_text(encoding="utf-8"))
    feed = load_residents_feed()
    initial = read_residents(feeds / report["residents"]["file"], list(feed.columns))
    bad = {r["line"] - 1 for r in report["residents"]["planted_rows"]}
    taken = _ids_in_other_drops(path.parent, feed.columns)
    ids = initial.column(_source_of(feed.columns, "citizen_id")).to_pylist()
    rng = np.random.default_rng(seed)
    table = community_table(load_registry(VINTAGE))
    for row in rng.permutation(initial.num_rows):
        if int(row) in bad or ids[row] in taken:
            continue
        chosen = {f: np.array([initial.column(s)[int(row)].as_py()], dtype=object) for s, f in feed.columns.items()}
        for _ in range(50):  # draw_changes moves within the street half of the time: draw again
            changes = draw_changes(chosen, table, rng)
            if changes.fields["division_code"][0][:6] != chosen["division_code"][0][:6]:
                write_gb18030_csv(path, list(feed.columns),
                                  [[changes.fields[f].tolist() for f in feed.columns.values()]])
                return {"rows": 1, "moved": 1, "from": chosen["division_code"][0],
                        "to": changes.fields["division_code"][0]}
    raise RuntimeError("no resident could be moved to another district")


def _source_of(columns: dict[str, str], field: str) -> str:
    return next(source for source, f in columns.items() if f == field)


def _ids_in_other_drops(folder: Path, columns: dict[str, str]) -> set[str]:
    from civicnet.demo.changes import read_residents

    source = _source_of(columns, "citizen_id")
    return {cid for drop in folder.glob("*.csv")
            for cid in read_residents(drop, list(columns)).column(source).to_pylist()}
