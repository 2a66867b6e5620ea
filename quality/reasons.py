"""Stable reason codes for quarantined rows, each with a sentence a department can act on.

The codes are machine words and never translated; the sentences are English msgids of the
`civicnet` catalogue (schemas/i18n.py), stored in English in the quarantine and said in the
reader's language when a report is made (`translated_message`)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from schemas.i18n import DEFAULT_LANG, N_, parse_lang, translation

Reason = Literal[
    "required_missing", "invalid_date", "invalid_number", "invalid_integer", "not_in_code_list",
    "pattern_mismatch", "out_of_range", "invalid_length", "invalid_citizen_id", "mojibake",
    "unknown_division", "wrong_tier", "duplicate_key", "outside_jurisdiction", "key_owned_elsewhere",
    "control_character",
]


# {field} is the contract field, {title} its Chinese title, {value} the value as sent; `key_owned_elsewhere`
# (given by the merge, which alone sees the current records) also has {owner} and {owner_name}, the code and
# name of the division whose record the key is: nothing of that record itself is ever shown.
MESSAGES: dict[Reason, str] = {
    "required_missing": N_("{title} ({field}) is empty but required; fill it in and resend the row"),
    "invalid_date": N_("{title} ({field}) '{value}' is not a real date in the feed's format; correct it and resend"),
    "invalid_number": N_("{title} ({field}) '{value}' is not a number; send digits with an optional decimal point"),
    "invalid_integer": N_("{title} ({field}) '{value}' is not a whole number; correct it and resend"),
    "not_in_code_list": N_("{title} ({field}) '{value}' is not in the code list; use one of the contract's values"),
    "pattern_mismatch": N_("{title} ({field}) '{value}' does not have the required form; see the contract's pattern"),
    "out_of_range": N_("{title} ({field}) '{value}' is outside the allowed range; check the measurement and resend"),
    "invalid_length": N_("{title} ({field}) '{value}' is too short or too long; correct it and resend"),
    "invalid_citizen_id": N_("{title} ({field}) '{value}' fails the GB 11643 check (check character or birth date); "
                          "correct the ID from the identity card and resend"),
    "mojibake": N_("{title} ({field}) '{value}' is garbled text (decoded in the wrong encoding); "
                "re-export the record as GB18030 or UTF-8 and resend"),
    "unknown_division": N_("{title} ({field}) '{value}' is not a division of the row's vintage; "
                        "use a code from the division registry"),
    "wrong_tier": N_("{title} ({field}) '{value}' is a division of the wrong tier for this dataset; "
                  "anchor the row at the tier the contract names"),
    "outside_jurisdiction": N_("{title} ({field}) '{value}' lies outside the sender's own jurisdiction; a community "
                            "may send only rows of its own community: remove the row or ask its community"),
    "key_owned_elsewhere": N_("{title} ({field}) '{value}' is the key of a current record of {owner} {owner_name}, "
                              "not of the sender's community: a community may change, move or delete only its "
                              "own records. Check the key; if the record really belongs to your community now, "
                              "ask the department that owns the dataset to record the move"),
    "duplicate_key": N_("{title} ({field}) '{value}' repeats the key of an earlier row in this batch with different "
                     "content; keep one version of the record and resend"),
    # no {value}: the value is not shown, since its control characters would garble the report
    "control_character": N_("{title} ({field}) contains a control character (such as NUL or a form feed), which "
                         "text may not hold; remove it in the source system and resend"),
}


def template(code: str) -> str:
    """The sentence of a reason code: a built-in check's, or a dataset rule's (quality/rules.py)."""
    if code in MESSAGES:  # a str is checked against the Reason keys at run time
        return MESSAGES[code]
    from quality.rules import rule

    return rule(code).message


def owned_elsewhere_format(title: str, field: str) -> str:
    """The `key_owned_elsewhere` sentence as a DuckDB format() template for the merge: {0} the key as
    sent, {1} the owner division's code, {2} its name (braces in the title are escaped)."""
    def escape(text: str) -> str:
        return text.replace("{", "{{").replace("}", "}}")

    return MESSAGES["key_owned_elsewhere"].format(title=escape(title), field=escape(field), value="{0}",
                                                  owner="{1}", owner_name="{2}")


@lru_cache(maxsize=64)
def _parser(code: str) -> re.Pattern[str] | None:
    """A pattern that reads title, field and value back out of a stored English sentence of a code."""
    if code not in MESSAGES:
        return None
    groups = {"title": r"(?P<title>.*?)", "field": r"(?P<field>[^()]*?)", "value": r"(?P<value>.*)",
              "owner": r"(?P<owner>\d{12})", "owner_name": r"(?P<owner_name>.*?)"}
    parts = re.split(r"(\{(?:title|field|value|owner|owner_name)\})", MESSAGES[code])
    return re.compile("".join(groups[p[1:-1]] if p[1:-1] in groups and p.startswith("{") else re.escape(p)
                              for p in parts) + r"\Z", re.S)


def translated_message(code: str, message: str, lang: str = DEFAULT_LANG) -> str:
    """A stored (English) reason sentence in the reader's language; unchanged when English or not a
    built-in code's sentence (a dataset rule's sentence is said as its rule file writes it)."""
    if parse_lang(lang) == "en":
        return message
    pattern = _parser(code)
    found = pattern.match(message) if pattern is not None else None
    if found is None:
        return message
    return translation(lang).gettext(MESSAGES[code]).format(**found.groupdict())  # type: ignore[index]
