"""Stable reason codes for quarantined rows, each with a sentence a department can act on."""

from __future__ import annotations

from typing import Literal

Reason = Literal[
    "required_missing", "invalid_date", "invalid_number", "invalid_integer", "not_in_code_list",
    "pattern_mismatch", "out_of_range", "invalid_length", "invalid_citizen_id", "mojibake",
    "unknown_division", "wrong_tier", "duplicate_key", "outside_jurisdiction", "control_character",
]


# {field} is the contract field, {title} its Chinese title, {value} the value as sent.
MESSAGES: dict[Reason, str] = {
    "required_missing": "{title} ({field}) is empty but required; fill it in and resend the row",
    "invalid_date": "{title} ({field}) '{value}' is not a real date in the feed's format; correct it and resend",
    "invalid_number": "{title} ({field}) '{value}' is not a number; send digits with an optional decimal point",
    "invalid_integer": "{title} ({field}) '{value}' is not a whole number; correct it and resend",
    "not_in_code_list": "{title} ({field}) '{value}' is not in the code list; use one of the contract's values",
    "pattern_mismatch": "{title} ({field}) '{value}' does not have the required form; see the contract's pattern",
    "out_of_range": "{title} ({field}) '{value}' is outside the allowed range; check the measurement and resend",
    "invalid_length": "{title} ({field}) '{value}' is too short or too long; correct it and resend",
    "invalid_citizen_id": "{title} ({field}) '{value}' fails the GB 11643 check (check character or birth date); "
                          "correct the ID from the identity card and resend",
    "mojibake": "{title} ({field}) '{value}' is garbled text (decoded in the wrong encoding); "
                "re-export the record as GB18030 or UTF-8 and resend",
    "unknown_division": "{title} ({field}) '{value}' is not a division of the row's vintage; "
                        "use a code from the division registry",
    "wrong_tier": "{title} ({field}) '{value}' is a division of the wrong tier for this dataset; "
                  "anchor the row at the tier the contract names",
    "outside_jurisdiction": "{title} ({field}) '{value}' lies outside the sender's own jurisdiction; a community "
                            "may send only rows of its own community: remove the row or ask its community",
    "duplicate_key": "{title} ({field}) '{value}' repeats the key of an earlier row in this batch with different "
                     "content; keep one version of the record and resend",
    # no {value}: the value is not shown, since its control characters would garble the report
    "control_character": "{title} ({field}) contains a control character (such as NUL or a form feed), which "
                         "text may not hold; remove it in the source system and resend",
}


def template(code: str) -> str:
    """The sentence of a reason code: a built-in check's, or a dataset rule's (quality/rules.py)."""
    if code in MESSAGES:  # a str is checked against the Reason keys at run time
        return MESSAGES[code]
    from quality.rules import rule

    return rule(code).message
