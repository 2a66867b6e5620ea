"""GX's SQL engine inside DuckDB (quality/gx_engine.py): the empty-result trap stays solved.

`test_civicnet_duckdb_datasource_computes_every_metric` fails if the trap comes back (a GX or
duckdb_engine upgrade, or someone validating through GX's plain SQL datasource again): every
metric must come back with the exact count planted. The last test keeps the upstream
reproduction, so an upgrade that fixes it upstream is noticed.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import great_expectations as gx
import pytest

from quality.gate import validate_table
from quality.gx_engine import add_datasource, close_datasource, ephemeral_context


@pytest.fixture
def node_file(tmp_path: Path) -> Path:
    """1,000 rows: 3 NULL sexes, 2 sexes outside the code list, ids unique, vintages in range."""
    path = tmp_path / "node.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("""CREATE TABLE residents AS SELECT 'id' || i AS citizen_id,
                       CASE WHEN i < 3 THEN NULL WHEN i < 5 THEN '9' ELSE CAST(1 + i % 2 AS VARCHAR) END AS sex,
                       2020 AS vintage FROM range(1000) t(i)""")
    return path


def test_civicnet_duckdb_datasource_computes_every_metric(node_file: Path) -> None:
    e = gx.expectations
    rows, result = validate_table(f"duckdb:///{node_file}", "residents", "trap", [
        e.ExpectTableRowCountToBeBetween(min_value=1),
        e.ExpectColumnValuesToBeUnique(column="citizen_id"),
        e.ExpectColumnValuesToNotBeNull(column="sex"),
        e.ExpectColumnValuesToBeInSet(column="sex", value_set=["1", "2"]),
        e.ExpectColumnValuesToBeBetween(column="vintage", min_value=2000, max_value=2100),
        e.ExpectColumnValuesToMatchRegex(column="citizen_id", regex=r"^id\d+$"),
    ])
    by_type = {r.expectation: r for r in rows}
    assert all(r.exception is None for r in rows), rows
    assert by_type["expect_table_row_count_to_be_between"].observed_value == 1000
    assert by_type["expect_column_values_to_be_unique"].success
    assert by_type["expect_column_values_to_not_be_null"].unexpected_count == 3
    assert by_type["expect_column_values_to_be_in_set"].unexpected_count == 2
    assert by_type["expect_column_values_to_be_between"].success
    assert by_type["expect_column_values_to_match_regex"].success
    assert not result.success


def test_the_duckdb_file_is_released_after_validation(node_file: Path) -> None:
    validate_table(f"duckdb:///{node_file}", "residents", "release", [gx.expectations.ExpectTableRowCountToBeBetween(
        min_value=1)])
    with duckdb.connect(str(node_file)) as con:  # a writer can open it again: no connection was left open
        con.execute("DROP TABLE residents")


def test_a_duckdb_url_gets_the_civicnet_engine(node_file: Path) -> None:
    ctx = ephemeral_context()
    ds = add_datasource(ctx, "n", f"duckdb:///{node_file}")
    try:
        assert type(ds).__name__ == "DuckDBDatasource"
        assert ds.type == "civicnet_duckdb"
    finally:
        close_datasource(ds)


def test_gx_sql_datasource_on_duckdb_fails_a_clean_table(tmp_path: Path) -> None:
    """Known trap (great-expectations 1.24 + duckdb_engine 0.17): GX's SqlAlchemyExecutionEngine
    runs each metric query inside `with get_connection()` and calls fetchall() after the
    connection is closed; duckdb_engine's result is then empty, `res[0]` raises IndexError, and
    every expectation comes back unsuccessful with "list index out of range", on clean data.

    This test asserts that observed behaviour of GX's *plain* SQL datasource. If it starts failing,
    upstream has fixed the trap and quality/gx_engine.py's engine can go."""
    path = tmp_path / "node.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE residents (citizen_id VARCHAR, sex VARCHAR, vintage BIGINT)")
        con.execute("INSERT INTO residents VALUES ('a', '1', 2020), ('b', '2', 2020), ('c', '1', 2020)")
    e = gx.expectations
    expectations = [
        e.ExpectTableRowCountToBeBetween(min_value=1),
        e.ExpectColumnValuesToBeUnique(column="citizen_id"),
        e.ExpectColumnValuesToNotBeNull(column="sex"),
        e.ExpectColumnValuesToBeInSet(column="sex", value_set=["1", "2"]),
        e.ExpectColumnValuesToBeBetween(column="vintage", min_value=2000, max_value=2100),
    ]
    ctx = ephemeral_context()
    suite = ctx.suites.add(gx.ExpectationSuite(name="trap", expectations=expectations))

    # Control: the same rows and suite through GX's pandas engine pass, so the data is clean.
    with duckdb.connect(str(path), read_only=True) as con:
        frame = con.sql("SELECT * FROM residents").df()
    pandas_batch = (ctx.data_sources.add_pandas("frame").add_dataframe_asset("residents")
                    .add_batch_definition_whole_dataframe("all"))
    control = pandas_batch.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    assert control.success

    sql_batch = (ctx.data_sources.add_sql("node", connection_string=f"duckdb:///{path}")
                 .add_table_asset("residents", table_name="residents")
                 .add_batch_definition_whole_table("all"))
    observed = sql_batch.get_batch().validate(suite, result_format="SUMMARY")

    assert not observed.success
    assert len(observed.results) == len(expectations)
    for r in observed.results:
        assert not r.success, r.expectation_config.type
        assert r.result == {}, r.expectation_config.type
        messages = [info["exception_message"] for info in (r.exception_info or {}).values()
                    if isinstance(info, dict)]
        assert messages, r.expectation_config.type
        assert all(m == "list index out of range" for m in messages), messages
