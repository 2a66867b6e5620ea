"""Text encodings of payloads: a declared one checked (`text_encoding`), an undeclared one detected
(`detect_encoding`, in bounded chunks for a stream), and a stream's lines decoded one at a time with
the place of the first undecodable byte (`decoded_lines`)."""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from typing import IO

from connectors.parse_limits import NotTextError, UnreadablePayloadError

_CHUNK = 8 << 20  # bytes decoded at a time when an encoding is detected
# tried in order after a BOM and strict UTF-8; GBK text is a subset of GB18030
_ENCODINGS = ("gb18030",)


def text_encoding(encoding: str) -> str:
    """The canonical name of a text encoding; refuses unknown codecs and those that are not text
    (rot13, zlib_codec, base64, ...), which Python's codecs also offer under an encoding's name."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise UnreadablePayloadError(f"encoding {encoding[:40]!r} is unknown; use utf-8 or gb18030, or leave it "
                                     "out to have it detected") from None
    if not getattr(info, "_is_text_encoding", True):
        raise UnreadablePayloadError(f"encoding {encoding[:40]!r} is not a text encoding; use utf-8 or gb18030, "
                                     "or leave it out to have it detected")
    return info.name


def detect_encoding(data: bytes) -> str:
    """The encoding of a CSV drop: a BOM says it; else strict UTF-8 if the bytes decode; else GB18030
    (which also reads every GBK file). Raises if nothing decodes, so a file is never misread."""
    return detect_stream_encoding(io.BytesIO(data))


def detect_stream_encoding(stream: IO[bytes]) -> str:
    """`detect_encoding` of a seekable binary stream, read in bounded chunks (left at its start)."""
    head = stream.read(3)
    stream.seek(0)
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    for encoding in ("utf-8", *_ENCODINGS):
        decodes = _decodes(stream, encoding)
        stream.seek(0)
        if decodes:
            return encoding
    raise UnreadablePayloadError(
        "the file is neither UTF-8 nor GB18030/GBK text; resend it in UTF-8, or declare its encoding ('encoding' "
        "in the feed config for a file drop, the X-Encoding header for a push)")


def _decodes(stream: IO[bytes], encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        while chunk := stream.read(_CHUNK):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def decoded_lines(stream: IO[bytes], codec: str) -> Iterator[str]:
    """The lines of a text stream, decoded one at a time (the line ends are ASCII in every encoding we
    read but UTF-16/32, which are decoded whole); NotTextError says where the first undecodable byte is."""
    if codec.lower().replace("_", "-").startswith(("utf-16", "utf-32")):
        data = stream.read()
        try:
            yield from io.StringIO(data.decode(codec), newline="")
        except UnicodeDecodeError as err:
            raise NotTextError(data[:err.start].count(b"\n") + 1, err.start) from None
        return
    decoder = codecs.getincrementaldecoder(codec)()
    offset = 0
    for number, raw in enumerate(stream, start=1):
        try:
            yield decoder.decode(raw)
        except UnicodeDecodeError as err:
            raise NotTextError(number, offset + err.start) from None
        offset += len(raw)
