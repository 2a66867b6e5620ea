"""The one catalogue of what departments, communities and the public read, and how times read.

Every sentence a person outside the IT bureau reads (rejection reports, the quality page, GX Data
Docs additions, the push client) is written in English in the code, marked with gettext's `_()`
(or `N_()` where it is only marked, to be translated later), and translated through the
`civicnet` gettext domain shipped in `schemas/locale/<lang>/LC_MESSAGES/civicnet.{po,mo}`.
zh-CN is the default language (DESIGN.md: Language); English is the msgid source, so `en` needs
no catalogue. Babel is the tooling (`make locale` extracts, updates and compiles) and formats
times for the reader's locale. It lives in `schemas/` because quality, connectors and civicnet
all need it and schemas is the package everyone may import.

Times a reader sees are shown in Asia/Shanghai with their date, e.g. `2026-12-01 20:15 (UTC+8)`;
never a relative "6 min ago" frozen into a file.
"""

from __future__ import annotations

import datetime as dt
import gettext
from functools import cache, lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from babel.dates import format_datetime

from schemas.errors import TerminalError

Lang = Literal["zh_CN", "en"]
LANGS: tuple[Lang, ...] = ("zh_CN", "en")
DEFAULT_LANG: Lang = "zh_CN"
DOMAIN = "civicnet"
LOCALE_DIR = Path(__file__).parent / "locale"
SHANGHAI = ZoneInfo("Asia/Shanghai")


class UnknownLanguageError(TerminalError):
    """A language civicnet has no catalogue for was asked for."""


class NaiveTimeZoneError(TerminalError, ValueError):
    """A time without a time zone was given to be shown (civicnet stores only aware times)."""


def N_(message: str) -> str:
    """Mark a message for extraction without translating it here (it is translated where shown)."""
    return message


def parse_lang(value: str | None) -> Lang:
    """A language tag (`zh-CN`, `zh_CN`, `zh`, `en`, `en-US`; None: the default) as a catalogue name."""
    if value is None or not value.strip():
        return DEFAULT_LANG
    tag = value.strip().replace("-", "_").lower()
    if tag in {"zh", "zh_cn", "zh_hans", "zh_hans_cn"}:
        return "zh_CN"
    if tag == "en" or tag.startswith("en_"):
        return "en"
    raise UnknownLanguageError(f"language {value[:40]!r} has no catalogue; use one of: zh-CN (default), en")


def negotiate_lang(accept_language: str | None) -> Lang:
    """The best catalogue for an HTTP Accept-Language header (zh-CN when nothing matches)."""
    if not accept_language:
        return DEFAULT_LANG
    preferred = []
    for part in accept_language[:500].split(","):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            continue
        if tag and weight > 0:
            preferred.append((weight, tag.strip()))
    for _, tag in sorted(preferred, key=lambda p: -p[0]):  # stable: equal weights keep the header's order
        try:
            return parse_lang(tag)
        except UnknownLanguageError:
            continue
    return DEFAULT_LANG


@lru_cache(maxsize=4)
def translation(lang: str | None = None) -> gettext.NullTranslations:
    """The gettext translations of one language (English: the msgids themselves)."""
    return _catalogue(parse_lang(lang))


@cache
def _catalogue(name: str) -> gettext.NullTranslations:
    """Read once per process: a report translates every row's sentence, and gettext looks the file
    up on disk at each call."""
    if name == "en":
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, localedir=str(LOCALE_DIR), languages=[name])


def format_time(value: dt.datetime | str | None, lang: str | None = None) -> str:
    """A time as a reader sees it: Asia/Shanghai with its date, `2026-12-01 20:15 (UTC+8)` ('' for None).

    Naive times are refused (civicnet stores only aware ones)."""
    if value is None:
        return ""
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        raise NaiveTimeZoneError(f"time {moment.isoformat()} has no time zone; pass an aware time (civicnet stores "
                                 "only aware ones: UTC for system times)")
    local = moment.astimezone(SHANGHAI)
    offset = local.utcoffset() or dt.timedelta()
    hours = int(offset.total_seconds() // 3600)
    shown = format_datetime(local, "yyyy-MM-dd HH:mm", tzinfo=SHANGHAI, locale=parse_lang(lang))
    return f"{shown} (UTC{hours:+d})"
