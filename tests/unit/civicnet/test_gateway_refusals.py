"""Gateway refusals that cost it little and reveal nothing: bounded parsing (413/422 with the limit),
text encodings only, and no server paths in what a remote sender reads. In process (ASGI), no home
is built: every request here is refused before anything lands."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
from starlette.testclient import TestClient

from civicnet.gateway.app import create_app
from connectors.parse_limits import PUSH_LIMITS, ParseLimits
from connectors.push.senders import add_sender
from schemas.media import CSV, JSONL, XLSX

DATASET = "community_expenditures"
HEADER = "支出编号,社区代码,年度,季度,支出类别,金额,说明"
# small limits, so the tests stay fast; the gateway's own are PUSH_LIMITS
LIMITS = ParseLimits(rows=1000, columns=20, uncompressed_bytes=1 << 20)


class NoTrigger:
    """A trigger that is never reached: every request in this file is refused before landing."""

    node_lock = threading.Lock()

    def __call__(self, feed: str, batch_id: str) -> None:
        raise AssertionError("a refused upload must not trigger a run")

    def last_error(self, batch_id: str) -> str | None:
        return None


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str, Path]]:
    home = tmp_path_factory.mktemp("gw")
    token = add_sender(home, "ca", "department", "civil_affairs")
    with TestClient(create_app(home, NoTrigger(), limits=LIMITS)) as c:
        yield c, token, home


def post(client: tuple[TestClient, str, Path], body: bytes, media_type: str = CSV,
         extra: dict[str, str] | None = None) -> tuple[int, str]:
    c, token, _ = client
    answer = c.post(f"/v1/datasets/{DATASET}/batches", content=body,
                    headers={"Authorization": f"Bearer {token}", "Content-Type": media_type,
                             "X-Filename": "upload", **(extra or {})})
    return answer.status_code, answer.json()["error"]


def test_too_many_rows_is_413_with_the_limit(client: tuple[TestClient, str, Path]) -> None:
    body = (HEADER + "\n").encode() + b"E,1,2,3,4,5,6\n" * (LIMITS.rows + 1)
    status, error = post(client, body)
    assert status == 413
    assert f"more than {LIMITS.rows} rows" in error and "split" in error


def test_a_workbook_claiming_more_rows_than_the_limit_is_413(client: tuple[TestClient, str, Path]) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADER.split(","))
    sheet.cell(row=LIMITS.rows + 2, column=1, value="x")
    out = io.BytesIO()
    book.save(out)
    status, error = post(client, out.getvalue(), XLSX)
    assert status == 413
    assert f"more than {LIMITS.rows} rows" in error


def test_too_many_json_keys_is_422_with_the_limit(client: tuple[TestClient, str, Path]) -> None:
    body = b"".join(b'{"k%d": 1}\n' % i for i in range(LIMITS.columns + 1))
    status, error = post(client, body, JSONL)
    assert status == 422
    assert f"more than {LIMITS.columns} columns" in error


@pytest.mark.parametrize("codec", ["rot13", "zlib_codec", "base64", "uu"])
def test_a_codec_that_is_not_a_text_encoding_is_422(client: tuple[TestClient, str, Path], codec: str) -> None:
    status, error = post(client, (HEADER + "\n").encode(), extra={"X-Encoding": codec})
    assert status == 422
    assert "not a text encoding" in error


def test_a_charset_that_is_not_a_text_encoding_is_422(client: tuple[TestClient, str, Path]) -> None:
    status, error = post(client, (HEADER + "\n").encode(), media_type=f"{CSV}; charset=zlib_codec")
    assert status == 422
    assert "not a text encoding" in error


def test_wrong_columns_name_the_contract_without_the_servers_path(client: tuple[TestClient, str, Path]) -> None:
    status, error = post(client, "编号,金额\nE1,5\n".encode())
    assert status == 422
    assert "schemas/datasets/community_expenditures.yaml" in error
    assert str(Path(__file__).parents[3]) not in error and not any(
        part.startswith("/") for part in error.split() if "schemas" in part)


def test_the_push_limits_fit_the_gateways_body_limit() -> None:
    assert PUSH_LIMITS.rows >= 100_000 and PUSH_LIMITS.uncompressed_bytes >= 16 << 20
