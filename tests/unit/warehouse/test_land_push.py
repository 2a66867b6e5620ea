"""Landing a pushed file: the manifest names its sender and scope, the receipt is written once the
batch has landed, and the same content again lands nothing and answers with the first receipt."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from warehouse import landing

DATA = "支出编号,社区代码\nE1,440304001001\n".encode()
TABLE = pa.table({"支出编号": ["E1"], "社区代码": ["440304001001"], "_line": [1]})
PUSHED = landing.PushedFile("community_expenditures", "community_expenditures", "community:440304001001",
                            "station", "440304001001", "支出.csv", "text/csv", "utf-8")


def test_a_pushed_file_lands_with_its_sender_and_a_receipt(tmp_path: Path) -> None:
    receipt, fresh = landing.land_push(tmp_path, PUSHED, DATA, TABLE)

    batch_id = hashlib.sha256(DATA).hexdigest()
    assert fresh and receipt["batch_id"] == batch_id == landing.batch_id_of(DATA)
    assert receipt == {"batch_id": batch_id, "dataset": "community_expenditures", "sender": "station",
                       "file": "支出.csv", "rows": 1, "received_at": receipt["received_at"]}
    assert landing.read_receipt(tmp_path, batch_id) == receipt
    manifest = landing.read_manifest(tmp_path, "community_expenditures", batch_id)
    assert (manifest.sender, manifest.scope, manifest.department) == ("station", "440304001001",
                                                                      "community:440304001001")
    assert (manifest.row_count, manifest.byte_size) == (1, len(DATA))
    assert manifest.received_at == dt.datetime.fromisoformat(receipt["received_at"])  # aware, the same moment


def test_the_same_content_again_answers_with_the_first_receipt(tmp_path: Path) -> None:
    first, _ = landing.land_push(tmp_path, PUSHED, DATA, TABLE)
    other = dataclasses.replace(PUSHED, sender="someone-else", source_name="again.csv")

    again, fresh = landing.land_push(tmp_path, other, DATA, TABLE)

    assert not fresh and again == first
    assert landing.read_manifest(tmp_path, "community_expenditures", first["batch_id"]).sender == "station"


def test_no_receipt_is_written_until_the_batch_has_landed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: Any) -> bool:
        raise RuntimeError("killed while landing")

    monkeypatch.setattr(landing, "land", crash)
    with pytest.raises(RuntimeError):
        landing.land_push(tmp_path, PUSHED, DATA, TABLE)
    assert landing.read_receipt(tmp_path, landing.batch_id_of(DATA)) is None
    assert not landing.receipt_path(tmp_path, landing.batch_id_of(DATA)).exists()
