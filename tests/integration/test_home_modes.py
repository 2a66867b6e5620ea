"""A home built through the real pipeline holds nothing others can read: nodes, extracts, landing,
staging, outbox, quarantine and reports are owner-only, or readable (not writable) by a share group."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import AS_OF, share_group

from civicnet import context, pipeline
from schemas.homefiles import shared, using_modes
from warehouse.extract import publish_extract

# Written by the simulated departments in-process (a real department writes its drop folder with
# its own account); `civicnet demo` writes them under its umask, which test_cli_sets_the_umask checks.
DEPARTMENT_DROPS = "feeds"


def open_entries(home: Path, allowed: int = 0) -> list[str]:
    """Every entry under `home` (and `home`) with a permission bit for group or others beyond `allowed`."""
    found = []
    for path in (home, *home.rglob("*")):
        rel = path.relative_to(home)
        if rel.parts[:1] == (DEPARTMENT_DROPS,) or path.is_symlink():
            continue
        if stat.S_IMODE(path.lstat().st_mode) & 0o077 & ~allowed:
            found.append(f"{oct(stat.S_IMODE(path.lstat().st_mode))} {rel}")
    return found


def test_a_home_built_by_the_pipeline_is_owner_only(demo_home: Path) -> None:
    kinds = {p.relative_to(demo_home).parts[0] for p in demo_home.iterdir()}

    assert {"nodes", "extracts", "landing", "staging", "outbox", "quality"} <= kinds  # the walk covers them
    assert open_entries(demo_home) == []


@pytest.mark.slow  # an ingest with its GX gate: about 40 s here
def test_a_share_group_reads_extracts_and_reports_but_writes_nothing(tmp_path: Path) -> None:
    from civicnet.demo.data import generate_feeds

    home = tmp_path / "shared"
    modes = shared(share_group())
    with using_modes(modes):
        os.umask(0o022)  # the packages give the modes themselves, not only the entry point's umask
        generate_feeds(home, 0.0002)
        pipeline.ingest_feed(home, "public_security_residents", AS_OF)  # planted bad rows: an outbox report
        publish_extract(home, context.city_code())

    entries = [p for p in (home, *home.rglob("*")) if p.relative_to(home).parts[:1] != (DEPARTMENT_DROPS,)]
    assert open_entries(home, allowed=0o050) == []  # the group may read and enter, no more; others nothing
    assert {p.lstat().st_gid for p in entries} == {modes.gid}
    assert any((home / "outbox").rglob("*.csv")) and any((home / "landing").rglob("raw.parquet"))
    extract = next((home / "extracts" / "city").glob("*.duckdb"))
    assert stat.S_IMODE(extract.stat().st_mode) == 0o640
    assert stat.S_IMODE((home / "extracts").stat().st_mode) == 0o2750
