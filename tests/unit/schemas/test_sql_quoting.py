"""Identifier and literal quoting (schemas/sql.py): what DuckDB reads back is the text quoted, whatever
quotes it holds; and the rule contract names must follow."""

from __future__ import annotations

import duckdb
import pytest

from schemas.contract import load_contracts
from schemas.sql import IDENTIFIER_MAX, identifier_problem, qualified, quote_ident, quote_literal

AWKWARD = ["plain", "o'neil", 'say "hi"', "both ' and \"", "空格 and 中文", "semi; DROP TABLE t; --", ""]


@pytest.mark.parametrize("text", AWKWARD, ids=["plain", "single", "double", "both", "cjk", "injection", "empty"])
def test_a_literal_reads_back_as_the_text(text: str) -> None:
    with duckdb.connect() as con:
        assert con.execute(f"SELECT {quote_literal(text)}").fetchall() == [(text,)]


@pytest.mark.parametrize("name", AWKWARD[:-1], ids=["plain", "single", "double", "both", "cjk", "injection"])
def test_an_identifier_names_exactly_its_table_and_column(name: str) -> None:
    with duckdb.connect() as con:
        con.execute(f"CREATE TABLE {quote_ident(name)} ({quote_ident(name)} INTEGER)")
        con.execute(f"INSERT INTO {qualified('memory', 'main', name)} VALUES (1)")
        found = con.execute("SELECT table_name, column_name FROM duckdb_columns() WHERE NOT internal").fetchall()
    assert found == [(name, name)]


def test_qualified_quotes_every_part() -> None:
    assert qualified("n440304001001", "_civicnet", "batches") == '"n440304001001"."_civicnet"."batches"'
    assert quote_ident('a"b') == '"a""b"'
    assert quote_literal("a'b") == "'a''b'"


@pytest.mark.parametrize(
    ("name", "problem"),
    [("citizen_id", None), ("a", None), ("x" * IDENTIFIER_MAX, None), ("floor_area_m2", None),
     ("_valid_from", "starts with '_'"), ("Name", "not plain lower-case ASCII"), ("2nd", "not plain"),
     ("姓名", "not plain"), ("a-b", "not plain"), ("a b", "not plain"), ("", "is empty"),
     ("x" * (IDENTIFIER_MAX + 1), "64 characters long"), (None, "is a NoneType, not text")],
    ids=["key", "one_letter", "longest", "digits", "reserved", "upper", "digit_first", "cjk", "dash", "space",
         "empty", "too_long", "not_text"])
def test_identifier_rule(name: object, problem: str | None) -> None:
    found = identifier_problem(name)
    assert found == problem if problem is None else problem in (found or "")


def test_every_shipped_dataset_and_field_name_keeps_the_rule() -> None:
    names = [n for c in load_contracts().values() for n in (c.name, *c.field_names)]
    assert len(names) > 6
    assert [(n, identifier_problem(n)) for n in names if identifier_problem(n)] == []
