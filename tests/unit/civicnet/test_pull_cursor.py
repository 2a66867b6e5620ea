"""The file cursor is saved after each landing, also when the content was already landed."""

from __future__ import annotations

import hashlib
import shutil
from importlib import resources
from pathlib import Path

import pytest

from civicnet import pipeline
from warehouse import landing

REFERENCE = Path(str(resources.files("schemas") / "reference" / "shenzhen_divisions_2020.csv"))


def drop(home: Path, name: str) -> None:
    folder = home / "feeds" / "statistics" / "divisions"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REFERENCE, folder / name)


def test_a_resent_file_lands_once_and_is_not_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drop(tmp_path, "a.csv")
    first = pipeline.pull(tmp_path, "statistics_divisions")
    drop(tmp_path, "b.csv")  # the same content under a new name
    second = pipeline.pull(tmp_path, "statistics_divisions")

    assert len(first) == 1 and second == first  # one batch: content-addressed
    digest = hashlib.sha256(REFERENCE.read_bytes()).hexdigest()
    assert landing.feed_state(tmp_path, "divisions", "statistics_divisions")["files"] == \
        {"a.csv": digest, "b.csv": digest}
    reads: list[str] = []
    monkeypatch.setattr(pipeline, "read_payload", lambda *a: reads.append(a[-1]))
    pipeline.pull(tmp_path, "statistics_divisions")
    assert reads == []
