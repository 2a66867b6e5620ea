"""SQL text pieces every package shares: identifier and literal quoting, and the rule for names.

Every table, column, schema and alias name interpolated into SQL goes through `quote_ident`
(or `qualified`), every path or string DuckDB cannot take as a bound parameter (ATTACH paths,
`read_parquet` arguments) through `quote_literal`: so a name or a home path with a quote in it
is text, never SQL. The quoting is the SQL standard's, which DuckDB and PostgreSQL share.

Names that contracts declare (datasets and fields) are also checked once, when the contract
loads, against `IDENTIFIER_RULE`: plain lower-case ASCII, so they need no quoting in an analyst's
query, fit PostgreSQL's 63-byte names, and never collide with civicnet's own `_`-prefixed columns.
"""

from __future__ import annotations

import re

IDENTIFIER_MAX = 63  # PostgreSQL truncates longer names (NAMEDATALEN - 1)
IDENTIFIER_RULE = (f"a lower-case ASCII letter first, then lower-case letters, digits or '_', "
                   f"at most {IDENTIFIER_MAX} characters")
_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*")


def quote_ident(name: str) -> str:
    """A SQL identifier in double quotes, any double quote inside doubled."""
    return '"' + name.replace('"', '""') + '"'


def qualified(*parts: str) -> str:
    """A qualified name, each part quoted: qualified("n1", "_civicnet", "batches") is
    "n1"."_civicnet"."batches"."""
    return ".".join(quote_ident(p) for p in parts)


def quote_literal(text: str) -> str:
    """A SQL string literal in single quotes, any single quote inside doubled (for ATTACH paths and
    other strings DuckDB cannot take as bound parameters)."""
    return "'" + text.replace("'", "''") + "'"


def identifier_problem(name: object) -> str | None:
    """What makes `name` unfit to name a dataset or a field (it breaks IDENTIFIER_RULE), or None."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not text"
    if not name:
        return "is empty"
    if name.startswith("_"):
        return "starts with '_', which civicnet keeps for its own columns (_line, _valid_from, ...)"
    if len(name) > IDENTIFIER_MAX:
        return f"is {len(name)} characters long"
    if not _IDENTIFIER.fullmatch(name):
        return "is not plain lower-case ASCII"
    return None
