"""Great Expectations on the warehouse engines: DuckDB files and PostgreSQL, push-down.

This module is the one place that knows how GX talks to DuckDB. The trap it solves
(great-expectations 1.24 with duckdb_engine 0.17): GX's `SqlAlchemyExecutionEngine.execute_query`
runs each metric query inside `with self.engine.connect()` and the caller fetches the rows
*after* that block. Closing a SQLAlchemy connection rolls back its (auto-begun) transaction, and
a DuckDB rollback discards the pending result, so every metric comes back empty: `res[0]` raises
IndexError and every expectation "fails" with "list index out of range" on clean data.

GX already keeps one connection open for the life of the engine for dialects whose state lives
in the connection (SQLite, SQL Server: `_PERSISTED_CONNECTION_DIALECTS`). DuckDB needs the same:
`DuckDBExecutionEngine` keeps its connection, and `DuckDBDatasource` (type `civicnet_duckdb`)
makes GX use that engine. duckdb_engine's SQLAlchemy dialect is PostgreSQL's (it subclasses it),
so GX's PostgreSQL paths — regex `~`, type names — are the ones that apply.
tests/unit/quality/test_gx_engine.py fails if the trap comes back, on either side.
"""

from __future__ import annotations

import builtins
import logging
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import great_expectations as gx
import sqlalchemy
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.datasource.fluent.sql_datasource import SQLDatasource
from great_expectations.execution_engine.sqlalchemy_execution_engine import SqlAlchemyExecutionEngine
from sqlalchemy.dialects import postgresql

logging.getLogger("great_expectations").setLevel(logging.WARNING)


def _dialect_module() -> types.ModuleType:
    """What GX looks types and the dialect up in: PostgreSQL's (duckdb_engine subclasses it, so
    the regex operator is `~`) plus SQLAlchemy's generic types, which is what duckdb_engine
    reflects columns as (`String`, `BigInteger`, `Double`, `Date`)."""
    module = types.ModuleType("civicnet_duckdb_dialect")
    for source in (sqlalchemy.types, postgresql):
        module.__dict__.update({k: v for k, v in vars(source).items() if not k.startswith("_")})
    return module


_DIALECT_MODULE = _dialect_module()


class DuckDBExecutionEngine(SqlAlchemyExecutionEngine):
    """GX's SQL engine for DuckDB: one connection kept open while the engine lives, so a query's
    rows are still there when GX fetches them (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dialect_module = _DIALECT_MODULE

    @contextmanager
    def get_connection(self) -> Iterator[sqlalchemy.Connection]:
        """The engine's one connection (opened on first use, closed by `close`)."""
        if not self._connection:
            self._connection = self.engine.connect()
        yield self._connection

    def close(self) -> None:
        """Close the kept connection and the engine's pool."""
        if self._connection:
            self._connection.close()
            self._connection = None
        super().close()


class DuckDBDatasource(SQLDatasource):
    """A DuckDB file as a GX SQL datasource that uses `DuckDBExecutionEngine`."""

    type: Literal["civicnet_duckdb"] = "civicnet_duckdb"  # type: ignore[assignment]

    @property
    def execution_engine_type(self) -> builtins.type[SqlAlchemyExecutionEngine]:
        """The engine that keeps its DuckDB connection."""
        return DuckDBExecutionEngine


def ephemeral_context() -> Any:
    """A GX context in memory, without progress bars (nothing is written to disk)."""
    config = DataContextConfig(progress_bars=ProgressBarsConfig(globally=False),
                               store_backend_defaults=InMemoryStoreBackendDefaults())
    return gx.get_context(mode="ephemeral", project_config=config)


def add_datasource(ctx: Any, name: str, url: str) -> Any:
    """A SQL datasource for a warehouse URL: `duckdb:///<file>` goes through `DuckDBDatasource`,
    PostgreSQL through GX's own Postgres datasource, anything else through its generic one."""
    if url.startswith("duckdb:"):
        return ctx.data_sources.add_civicnet_duckdb(name, connection_string=url)
    if url.startswith("postgresql"):
        return ctx.data_sources.add_postgres(name, connection_string=url)
    return ctx.data_sources.add_sql(name, connection_string=url)


def close_datasource(ds: Any) -> None:
    """Release a datasource's connections (a DuckDB file stays locked while one is open)."""
    engine = ds.execution_engine
    if engine is not None:
        engine.close()
    if ds._engine is not None:
        ds._engine.dispose()
