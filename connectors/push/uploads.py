"""The checks of an uploaded file before it lands, shared by the push gateway and `civicnet push`.

Pure functions over the upload's headers and bytes: which push feed takes the dataset, whether the
file name is a plain name, which media type and text encoding the body declares, and whether it
decodes within the push limits (connectors.parse_limits.PUSH_LIMITS). A refusal is an UploadRefusedError
carrying the HTTP status the gateway answers with and the sentence the sender reads; the gateway
turns it into its JSON answer. Nothing here knows where a batch is stored.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from urllib.parse import unquote

import pyarrow as pa

from connectors.feeds import Feed, PushSource, load_feeds
from connectors.parse import read_payload
from connectors.parse_encoding import text_encoding
from connectors.parse_limits import PUSH_LIMITS, ParseLimits, PayloadTooLargeError, UnreadablePayloadError
from schemas.errors import TerminalError
from schemas.media import MEDIA_TYPES

MAX_NAME = 200
_BATCH_ID = re.compile(r"^[0-9a-f]{64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UploadRefusedError(TerminalError):
    """An upload refused before it lands: the HTTP status the gateway answers with, and a sentence
    the sender can act on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def is_batch_id(text: str) -> bool:
    """Whether `text` has the shape of a batch id (the sha256 hex of a payload)."""
    return _BATCH_ID.match(text) is not None


def push_feeds(feeds: Mapping[str, Feed] | None = None) -> dict[str, Feed]:
    """The push feed of each dataset open for push, by dataset (from the shipped feeds unless given)."""
    chosen = feeds if feeds is not None else load_feeds()
    return {f.dataset: f for f in sorted(chosen.values(), key=lambda f: f.slug) if isinstance(f.connector, PushSource)}


def push_source(feeds: Mapping[str, Feed], dataset: str) -> tuple[Feed, PushSource]:
    """The push feed of `dataset` (from `push_feeds`) and its connector, else 422."""
    if dataset not in feeds:
        raise UploadRefusedError(422, f"dataset {dataset!r} is not open for push; datasets open for push: "
                                      f"{sorted(feeds)}")
    feed = feeds[dataset]
    assert isinstance(feed.connector, PushSource)  # push_feeds holds push feeds only
    return feed, feed.connector


def check_file_name(raw: str | None) -> str:
    """The sender's file name from `X-Filename` (percent-encoded UTF-8 allowed), if it is a plain name."""
    if raw is None or not raw.strip():
        raise UploadRefusedError(422, "header X-Filename is missing: send the file's name (percent-encoded if not "
                                      "ASCII)")
    try:
        name = unquote(raw.encode("latin-1").decode("utf-8"), errors="strict")
    except (UnicodeDecodeError, UnicodeEncodeError):
        name = None
    if (name is None or not name or len(name) > MAX_NAME or name in (".", "..") or ".." in name
            or "/" in name or "\\" in name or _CONTROL.search(name)):
        shown = raw[:MAX_NAME].encode("unicode_escape").decode("ascii")
        raise UploadRefusedError(422, f"file name {shown!r} must be a plain name: at most {MAX_NAME} characters, "
                                      "no '/', '\\', '..' or control characters (send the base name only)")
    return name


def media_type_of(content_type: str | None, x_encoding: str | None) -> tuple[str, str | None]:
    """The media type and text encoding of a body, from its `Content-Type` and `X-Encoding` headers
    (X-Encoding, else Content-Type's charset parameter)."""
    parts = [p.strip() for p in (content_type or "").split(";")]
    media_type = parts[0].lower()
    if media_type not in MEDIA_TYPES.values():
        raise UploadRefusedError(422, f"Content-Type {media_type!r} is not one the gateway reads; send one of "
                                      f"{sorted(set(MEDIA_TYPES.values()))} (by file extension: {MEDIA_TYPES})")
    charset = next((p.split("=", 1)[1].strip('"') for p in parts[1:] if p.lower().startswith("charset=")), None)
    encoding = x_encoding or charset
    if encoding is not None:
        try:
            text_encoding(encoding)  # unknown, or a codec that is not text (rot13, zlib_codec, base64): 422
        except UnreadablePayloadError as err:
            raise UploadRefusedError(422, f"header X-Encoding (or charset): {err}") from None
    return media_type, encoding


def body_too_large(limit: int) -> UploadRefusedError:
    """A body that declares or reaches more bytes than its push feed takes (`max_bytes`): 413."""
    return UploadRefusedError(413, f"the file is larger than this dataset's limit of {limit} bytes; "
                                   "split it into smaller files and send each")


def read_upload(data: bytes, media_type: str, encoding: str | None, name: str,
                limits: ParseLimits = PUSH_LIMITS) -> pa.Table:
    """Decode an uploaded file like `read_payload`, within the push limits (connectors.parse_limits.PUSH_LIMITS),
    with every unreadable file as UnreadablePayloadError."""
    try:
        return read_payload(data, media_type, encoding, name, limits)
    except zipfile.BadZipFile:  # openpyxl lets this through for bytes that are not a zip archive at all
        raise UnreadablePayloadError(f"{name}: not a readable XLSX workbook (not a zip archive); "
                                     "save it again as .xlsx") from None


def refusal(err: TerminalError) -> UploadRefusedError:
    """A file that cannot be taken, as the gateway answers it: 413 for more rows or inflated bytes
    than one upload may hold, 422 for the rest (unreadable, too many columns, not the feed's columns)."""
    if isinstance(err, UploadRefusedError):
        return err
    return UploadRefusedError(413 if isinstance(err, PayloadTooLargeError) else 422, str(err))


def check_rows(table: pa.Table, name: str) -> None:
    """Refuse (422) a file that decodes to no data rows."""
    if table.num_rows == 0:
        raise UploadRefusedError(422, f"{name} has a header but no data rows; send the rows")
