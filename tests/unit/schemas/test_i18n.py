"""The message catalogue (schemas/locale) is complete and compiled, and times read as officials expect."""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from schemas.i18n import LOCALE_DIR, UnknownLanguageError, format_time, negotiate_lang, parse_lang, translation

ROOT = Path(__file__).resolve().parents[3]
PO = LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / "civicnet.po"
PACKAGES = ("civicnet", "connectors", "quality", "schemas")


def _used_msgids() -> set[str]:
    """Every message the code marks for translation (Babel's extraction, as `make locale` runs it)."""
    found = set()
    for package in PACKAGES:
        for _name, _line, message, _comments, _context in extract_from_dir(
                ROOT / package, method_map=[("**.py", "python")]):
            found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_msgid_used_in_code_has_a_zh_cn_translation() -> None:
    catalog = read_po(PO.open("rb"))
    used = _used_msgids()
    assert len(used) > 50
    missing = sorted(m for m in used if catalog.get(m) is None or not catalog.get(m).string
                     or catalog.get(m).fuzzy)
    assert missing == [], f"run `make locale` and translate in {PO}: {missing}"


def test_the_mo_is_compiled_from_the_po() -> None:
    po = read_po(PO.open("rb"))
    mo = read_mo(io.BytesIO(PO.with_suffix(".mo").read_bytes()))
    expected = {m.id: m.string for m in po if m.id and m.string and not m.fuzzy}
    compiled = {m.id: m.string for m in mo if m.id}
    assert compiled == expected, "the .mo is stale: run `make locale`"


def test_zh_cn_is_the_default_and_english_the_source() -> None:
    assert translation(None).gettext("Batches") == "批次"
    assert translation("zh-CN").gettext("Batches") == "批次"
    assert translation("en").gettext("Batches") == "Batches"


@pytest.mark.parametrize(("header", "lang"), [
    (None, "zh_CN"), ("", "zh_CN"), ("en-US,en;q=0.9", "en"), ("zh-CN,zh;q=0.9,en;q=0.5", "zh_CN"),
    ("fr, en;q=0.3", "en"), ("fr", "zh_CN"), ("en;q=0, zh;q=0.1", "zh_CN"), ("x" * 10_000, "zh_CN"),
], ids=["none", "empty", "en-us", "zh-cn", "fr-then-en", "fr-only", "en-refused", "huge"])
def test_accept_language_picks_a_catalogue(header: str | None, lang: str) -> None:
    assert negotiate_lang(header) == lang


def test_an_unknown_language_is_refused_with_the_choices() -> None:
    with pytest.raises(UnknownLanguageError, match="zh-CN"):
        parse_lang("fr")


def test_times_are_shown_in_shanghai_with_their_date() -> None:
    assert format_time("2026-12-01T12:15:00+00:00") == "2026-12-01 20:15 (UTC+8)"
    assert format_time(dt.datetime(2026, 12, 1, 20, 15, tzinfo=dt.UTC), "en") == "2026-12-02 04:15 (UTC+8)"
    assert format_time(None) == ""
    with pytest.raises(ValueError, match="time zone"):
        format_time(dt.datetime(2026, 12, 1, 20, 15))  # noqa: DTZ001  (the naive time under test)


def test_no_message_is_marked_inside_an_f_string() -> None:
    """Babel's extractor does not look into f-strings: a `_()` there would never be translated."""
    pattern = re.compile(r"""\bf(["'])[^"']*\{[^}]*\b_\(""")
    found = [f"{path.relative_to(ROOT)}:{n}" for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
             for n, line in enumerate(path.read_text("utf-8").splitlines(), start=1) if pattern.search(line)]
    assert found == []
