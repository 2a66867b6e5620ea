"""The upload checks of a push, as pure functions: each refusal carries the HTTP status the gateway
answers with and a sentence the sender can act on (the gateway's own tests send them over HTTP)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from connectors.feeds import load_feeds
from connectors.parse_limits import PayloadTooLargeError, TooManyColumnsError, UnreadablePayloadError
from connectors.push.uploads import (
    MAX_NAME,
    UploadRefusedError,
    check_file_name,
    check_rows,
    is_batch_id,
    media_type_of,
    push_feeds,
    push_source,
    read_upload,
    refusal,
)
from schemas.errors import TerminalError
from schemas.media import CSV, XLSX


def refused(call: object, *args: object) -> UploadRefusedError:
    with pytest.raises(UploadRefusedError) as caught:
        call(*args)  # type: ignore[operator]
    assert isinstance(caught.value, TerminalError)
    return caught.value


@pytest.mark.parametrize("raw, name", [("stations.csv", "stations.csv"),
                                       ("%E6%94%AF%E5%87%BA.csv", "支出.csv")], ids=["ascii", "percent-encoded"])
def test_a_plain_file_name_is_taken(raw: str, name: str) -> None:
    assert check_file_name(raw) == name


@pytest.mark.parametrize("raw", ["../etc/passwd", "a/b.csv", "a\\b.csv", "..", "a\x01.csv", "x" * (MAX_NAME + 1),
                                 "%FF.csv"], ids=["dotdot", "slash", "backslash", "parent", "control", "long",
                                                  "not-utf8"])
def test_a_file_name_that_is_not_a_plain_name_is_422(raw: str) -> None:
    err = refused(check_file_name, raw)
    assert err.status == 422 and "must be a plain name" in err.message


def test_a_missing_file_name_is_422() -> None:
    assert "X-Filename is missing" in refused(check_file_name, None).message
    assert refused(check_file_name, "  ").status == 422


def test_the_media_type_and_encoding_come_from_the_headers() -> None:
    assert media_type_of("text/csv", None) == (CSV, None)
    assert media_type_of('Text/CSV; charset="gb18030"', None) == (CSV, "gb18030")
    assert media_type_of("text/csv; charset=utf-8", "gb18030") == (CSV, "gb18030")  # X-Encoding wins
    assert media_type_of(XLSX, None) == (XLSX, None)


def test_an_unknown_media_type_or_encoding_is_422() -> None:
    err = refused(media_type_of, "application/pdf", None)
    assert err.status == 422 and "Content-Type 'application/pdf'" in err.message and "text/csv" in err.message
    assert refused(media_type_of, None, None).status == 422
    err = refused(media_type_of, "text/csv", "rot13")
    assert err.status == 422 and err.message.startswith("header X-Encoding (or charset): ")


def test_refusal_maps_size_to_413_and_the_rest_to_422() -> None:
    assert refusal(PayloadTooLargeError("x: more than 5 rows")).status == 413
    assert refusal(TooManyColumnsError("x: more than 5 columns")).status == 422
    unreadable = refusal(UnreadablePayloadError("x: not a readable file"))
    assert (unreadable.status, unreadable.message) == (422, "x: not a readable file")


def test_bytes_that_are_no_workbook_are_unreadable() -> None:
    with pytest.raises(UnreadablePayloadError, match="not a zip archive"):
        read_upload(b"not a zip", XLSX, None, "book.xlsx")


def test_a_file_without_data_rows_is_422() -> None:
    check_rows(pa.table({"a": ["1"]}), "one.csv")
    assert "no data rows" in refused(check_rows, pa.table({"a": pa.array([], pa.string())}), "empty.csv").message


def test_only_push_feeds_are_open_for_push() -> None:
    feeds = push_feeds(load_feeds())
    assert list(feeds) == ["community_expenditures"]
    feed, source = push_source(feeds, "community_expenditures")
    assert feed.slug == "community_expenditures" and source.senders == ["owner", "community"]
    err = refused(push_source, feeds, "residents")
    assert err.status == 422 and "not open for push" in err.message and "community_expenditures" in err.message


def test_a_batch_id_is_a_sha256_hex() -> None:
    assert is_batch_id("0" * 64)
    assert not is_batch_id("0" * 63) and not is_batch_id("G" * 64) and not is_batch_id("../" + "0" * 61)
