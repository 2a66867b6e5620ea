"""The file cursor is saved after each landing, also when the content was already landed."""

from __future__ import annotations

import hashlib
import shutil
from importlib import resources
from pathlib import Path

import pytest

from civicnet import pipeline
from civicnet.pipeline import ingest
from connectors.payload import Payload
from schemas.media import CSV, PARQUET
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
    monkeypatch.setattr(ingest, "read_payload", lambda *a: reads.append(a[-1]))
    pipeline.pull(tmp_path, "statistics_divisions")
    assert reads == []


@pytest.mark.parametrize(("name", "data", "media_type", "encoding", "said"), [
    ("empty.csv", b"", CSV, "utf-8", "the file is empty"),
    ("cut.csv", b"id,name\n1,a\n2", CSV, "utf-8", "record 2 (after the header) has 1 fields"),
    ("latin.csv", b"id\n\xff\xfe\xff\n", CSV, None, "neither UTF-8 nor GB18030"),
    ("half.parquet", b"PAR1\x00\x00", PARQUET, None, "Parquet"),
], ids=["empty", "cut-mid-row", "undetectable-encoding", "cut-parquet"])
def test_an_unreadable_payload_decodes_to_no_rows_and_a_sentence_naming_it(
        name: str, data: bytes, media_type: str, encoding: str | None, said: str) -> None:
    table, why = pipeline.decode_payload(Payload(name=name, data=data, media_type=media_type, encoding=encoding))
    assert table.num_rows == 0 and why is not None
    assert name in why and said in why


def test_a_readable_payload_decodes_to_its_rows() -> None:
    table, why = pipeline.decode_payload(Payload(name="a.csv", data=b"id\n1\n2\n", media_type=CSV, encoding="utf-8"))
    assert (table["id"].to_pylist(), why) == (["1", "2"], None)


def _outcome(status: str = "applied", **counts: int) -> dict[str, object]:
    return {"batch_id": "b", "status": status, "applied": 0, "moved": 0, "released": 0, **counts}


@pytest.mark.parametrize(("outcomes", "expected"), [
    ([], {}),
    ([_outcome()], {}),  # every row identical to the version held
    ([_outcome("refused", applied=0)], {}),
    ([_outcome(applied=2, moved=1), _outcome(), _outcome(released=1, applied=1)],
     {"batches": 2, "applied": 3, "moved": 1, "released": 1}),
], ids=["no-batch", "all-unchanged", "refused", "changed"])
def test_city_changes_counts_only_batches_that_changed_rows(outcomes: list[dict[str, object]],
                                                             expected: dict[str, int]) -> None:
    assert pipeline.city_changes(outcomes) == expected


def test_a_failed_runs_message_is_its_tasks_terminal_errors_once_each() -> None:
    from civicnet.pipeline.runner import task_failures

    log = ("[info] Task started\nTraceback (most recent call last):\n"
           "airflow.sdk.exceptions.AirflowFailException: SQLite database /h/feeds/x.sqlite does not exist\n"
           "[info] retry\n"
           "airflow.sdk.exceptions.AirflowFailException: SQLite database /h/feeds/x.sqlite does not exist\n"
           "TypeError: 'NoneType' object is not iterable\n")
    assert task_failures(log) == ["SQLite database /h/feeds/x.sqlite does not exist"]
