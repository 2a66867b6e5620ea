"""Two pulls landing the same content at once: the second to finish leaves the first one's batch
folder as it is (its readers, a check already running on it, never see it vanish) and reports
the batch as landed before."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from warehouse import landing

DATA = b"code,name\n440304001018,x\n"


def manifest() -> landing.Manifest:
    return landing.Manifest(
        batch_id=hashlib.sha256(DATA).hexdigest(), feed="civil_affairs_facilities", department="civil_affairs",
        dataset="facilities", source_name="drop.csv", media_type="text/csv", encoding="utf-8",
        byte_size=len(DATA), row_count=1, received_at=dt.datetime(2021, 6, 30, tzinfo=dt.UTC), cursor={})


def test_a_batch_landed_meanwhile_by_another_pull_is_left_alone(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    table = pa.table({"code": ["440304001018"], "name": ["x"]})
    final = landing.batch_dir(tmp_path, "facilities", manifest().batch_id)
    write = landing.pq.write_table
    seen: dict[str, int] = {}

    def the_other_pull_finishes_first(t: pa.Table, where: Any, **kwargs: Any) -> None:
        write(t, where, **kwargs)
        if not seen:  # while this pull writes its copy, another lands the same content whole
            monkeypatch.setattr(landing.pq, "write_table", write)
            assert landing.land(tmp_path, manifest(), DATA, table) is True
            seen["inode"] = (final / "manifest.json").stat().st_ino

    monkeypatch.setattr(landing.pq, "write_table", the_other_pull_finishes_first)
    assert landing.land(tmp_path, manifest(), DATA, table) is False
    assert (final / "manifest.json").stat().st_ino == seen["inode"]  # the first folder, not replaced
    assert [p.name for p in final.parent.iterdir()] == [final.name]  # no temporary folder left
