"""SQL fragments for row checks, generated from contract fields (DuckDB dialect).

Each check is `CASE WHEN <failed> THEN [struct(code, field, message)] ELSE [] END`; conform
flattens them into the row's list of reasons.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

from quality.reasons import Reason
from schemas.citizen_id import CHECK_CHARS, WEIGHTS
from schemas.contract import Contract, Field
from schemas.derive import key_sql
from schemas.divisions import subtree_prefix
from schemas.sql import quote_ident, quote_literal

MessageSql = Callable[[str, str, str, str], str]
# Text decoded in the wrong encoding: the replacement character, GBK's famous 锟斤拷 (UTF-8
# U+FFFD bytes read as GBK), or UTF-8 bytes read as Latin-1/cp1252 (Ã¥, Ã©, â€ ...).
MOJIBAKE_RE = r"\x{FFFD}|锟斤拷|烫烫烫|屯屯屯|[\x{00C2}-\x{00EF}][\x{0080}-\x{00BF}\x{0152}-\x{2122}]"
_PARSE_REASON: dict[str, Reason] = {"date": "invalid_date", "datetime": "invalid_date",
                                    "number": "invalid_number", "integer": "invalid_integer"}


def sql_literal(value: object) -> str:
    """A SQL string literal of any value's text (schemas.sql.quote_literal)."""
    return quote_literal(str(value))


_BLANKS = "' ' || chr(9) || chr(10) || chr(13) || chr(160) || chr(12288)"


def text_expr(source: str | None, constant: object, values: Mapping[str, str] | None, normalise: bool = True) -> str:
    """The field's text as sent: trimmed, NFC-normalised (text fields; digits and dates have
    nothing to compose), empty → NULL, mapped through the value map."""
    if source is None:
        return f"CAST({sql_literal(constant)} AS VARCHAR)"
    column = f"nfc_normalize({quote_ident(source)})" if normalise else quote_ident(source)
    # spaces, tabs, line breaks, no-break and ideographic spaces: departments' exports carry them all
    text = f"nullif(trim({column}, {_BLANKS}), '')"
    if not values:
        return text
    cases = " ".join(f"WHEN {sql_literal(k)} THEN {sql_literal(v)}" for k, v in values.items())
    return f"CASE {text} {cases} ELSE {text} END"


def typed_expr(f: Field, text: str, date_format: str | None) -> str:
    """The field's typed value, NULL where the text does not parse."""
    if f.type == "string":
        return text
    if f.type == "date":
        if date_format:
            return f"CAST(try_strptime({text}, {sql_literal(date_format)}) AS DATE)"
        return f"TRY_CAST({text} AS DATE)"
    sql_type = {"integer": "BIGINT", "number": "DOUBLE", "datetime": "TIMESTAMPTZ", "boolean": "BOOLEAN"}[f.type]
    return f"TRY_CAST({text} AS {sql_type})"


def _case(cond: str, code: Reason | str, f: Field, text: str, message: MessageSql) -> str:
    msg = message(code, f.name, f.title, text)
    return (f"CASE WHEN {cond} THEN [struct_pack(code := '{code}', field := {sql_literal(f.name)}, "
            f"message := {msg})] ELSE [] END")


def citizen_id_valid_sql(text: str, today: dt.date) -> str:
    """GB 11643 in SQL: form, MOD 11-2 check character, and a real past birth date."""
    # TRY_CAST: DuckDB evaluates every operand even where the pattern test already failed.
    total = " + ".join(f"TRY_CAST(substr({text}, {i + 1}, 1) AS INTEGER) * {w}" for i, w in enumerate(WEIGHTS))
    born = f"try_strptime(substr({text}, 7, 8), '%Y%m%d')"
    return (f"(regexp_full_match({text}, '^\\d{{17}}[\\dX]$') "
            f"AND substr('{CHECK_CHARS}', (({total}) % 11) + 1, 1) = substr({text}, 18, 1) "
            f"AND {born} >= TIMESTAMP '0001-01-01' AND {born} <= DATE '{today.isoformat()}')")


def field_checks(f: Field, text: str, typed: str, today: dt.date, message: MessageSql) -> list[str]:
    """Every row check the contract asks of one field."""
    c = f.constraints
    out = []
    if f.required:
        out.append(_case(f"{text} IS NULL", "required_missing", f, text, message))
    if f.type in _PARSE_REASON:
        out.append(_case(f"{text} IS NOT NULL AND {typed} IS NULL", _PARSE_REASON[f.type], f, text, message))
    if f.type == "string":
        out.append(_case(f"regexp_matches({text}, {sql_literal(MOJIBAKE_RE)})", "mojibake", f, text, message))
    if "enum" in c:
        values = ", ".join(sql_literal(v) for v in c["enum"])
        out.append(_case(f"{text} NOT IN ({values})", "not_in_code_list", f, text, message))
    if "pattern" in c and "gb11643" not in f.checks:
        out.append(_case(f"NOT regexp_full_match({text}, {sql_literal(c['pattern'])})",
                         "pattern_mismatch", f, text, message))
    bounds = [f"{typed} < {float(c['minimum'])}"] if "minimum" in c else []
    bounds += [f"{typed} > {float(c['maximum'])}"] if "maximum" in c else []
    if bounds:
        out.append(_case(" OR ".join(bounds), "out_of_range", f, text, message))
    lengths = [f"length({text}) < {int(c['minLength'])}"] if "minLength" in c else []
    lengths += [f"length({text}) > {int(c['maxLength'])}"] if "maxLength" in c else []
    if lengths:
        out.append(_case(" OR ".join(lengths), "invalid_length", f, text, message))
    if "gb11643" in f.checks:
        out.append(_case(f"{text} IS NOT NULL AND NOT {citizen_id_valid_sql(text, today)}",
                         "invalid_citizen_id", f, text, message))
    return out


# C0 controls and DEL, except tab, line feed and carriage return (multi-line addresses in quoted CSV)
CONTROL_RE = r"[\x{00}-\x{08}\x{0B}\x{0C}\x{0E}-\x{1F}\x{7F}]"


def control_flag_sql(source_column: str) -> str:
    """True where a source value holds a control character. Computed on the value as sent, before NFC
    normalisation: DuckDB's nfc_normalize stops at a NUL, so a check after it would see a cut value."""
    return f"coalesce(regexp_matches({source_column}, {sql_literal(CONTROL_RE)}), false)"


def control_check(f: Field, flag_column: str, message: MessageSql) -> str:
    """The `control_character` reason where `flag_column` (control_flag_sql) is true."""
    return _case(flag_column, "control_character", f, "NULL", message)


def anchor_checks(contract: Contract, text: str, message: MessageSql, scope: str | None = None) -> list[str]:
    """The anchor must be a division of the row's vintage (`r.vintage`), at the contract's tier, and,
    for a batch a community sent, inside that community (`scope`)."""
    f = contract.field(contract.anchor)
    # uncorrelated IN (a join against the small division table, streamed), not a correlated EXISTS,
    # which DuckDB plans as a join that holds every row of the batch in memory; never NULL, as EXISTS
    row_key = f"(CAST(r.vintage AS VARCHAR) || ':' || {text})"
    key = "CAST(d.vintage AS VARCHAR) || ':' || d.code"
    known = f"coalesce({row_key} IN (SELECT {key} FROM divisions d), false)"
    out = [_case(f"regexp_full_match({text}, '^\\d{{12}}$') AND NOT {known}", "unknown_division", f, text, message)]
    if contract.anchor_tier != "any":
        right = (f"coalesce({row_key} IN (SELECT {key} FROM divisions d "
                 f"WHERE d.tier = {sql_literal(contract.anchor_tier)}), false)")
        out.append(_case(f"{known} AND NOT {right}", "wrong_tier", f, text, message))
    if scope is not None:
        prefix = sql_literal(subtree_prefix(scope))
        out.append(_case(f"{text} IS NOT NULL AND NOT starts_with({text}, {prefix})", "outside_jurisdiction",
                         f, text, message))
    return out


def rule_checks(contract: Contract, today: dt.date, message: MessageSql) -> list[str]:
    """The dataset's error-severity rules (quality/rules.py) as row checks over the typed columns."""
    from quality.rules import rules_for

    return [_case(f"coalesce({r.violation_sql(today)}, false)", r.code, contract.field(r.field),
                  quote_ident("t_" + r.field), message)
            for r in rules_for(contract.name, "error")]


def key_text_sql(contract: Contract, alias: str) -> str:
    """schemas.derive.key_sql, NULL where a part of the key is missing (a row with no key has none)."""
    present = " AND ".join(f"{alias}.{quote_ident(k)} IS NOT NULL" for k in contract.primary_key)
    return f"CASE WHEN {present} THEN {key_sql(contract, alias)} END"
