"""GX Data Docs for the contract suites and every batch's validation results.

The gate validates each batch in a context held in memory (no shared files between parallel
tasks) and keeps GX's results beside the batch (`staging/<batch>/gx_results.json`). This module
builds the Data Docs site from them in one file-backed GX project, `<home>/quality/gx/`: the
suites generated from today's contracts, and one validation result per batch suite, named by
batch. The site's index is `<home>/quality/gx/data_docs/index.html`.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import great_expectations as gx
from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResultSchema
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)

import quality.expectations  # noqa: F401  (registers the custom expectations the suites use)
from quality.gate import RESULTS_FILE
from quality.suite import batch_expectations, contract_expectations
from schemas.contract import Contract
from schemas.homefiles import make_folder, secure_tree

SITE = "local_site"


def project_root(home: Path) -> Path:
    """Where the GX project lives (`gx/` inside it)."""
    return home / "quality"


def docs_index(home: Path) -> Path:
    """The Data Docs entry page."""
    return project_root(home) / "gx" / "data_docs" / "index.html"


def _context(home: Path) -> Any:
    make_folder(project_root(home))
    ctx = gx.get_context(mode="file", project_root_dir=str(project_root(home)))
    site = {"class_name": "SiteBuilder", "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": "data_docs/"},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}}
    if ctx.variables.data_docs_sites != {SITE: site}:
        ctx.variables.data_docs_sites = {SITE: site}
        ctx.variables.save()
        ctx = gx.get_context(mode="file", project_root_dir=str(project_root(home)))
    return ctx


def _store_results(ctx: Any, stage: Path) -> int:
    """Put one batch's GX results into the project's validation store; returns how many."""
    path = stage / RESULTS_FILE
    run_time = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
    schema = ExpectationSuiteValidationResultSchema()
    stored = 0
    for raw in json.loads(path.read_text("utf-8")):
        result = schema.load(raw)
        key = ValidationResultIdentifier(ExpectationSuiteIdentifier(result.suite_name),
                                         RunIdentifier(run_name=stage.name[:16], run_time=run_time),
                                         batch_identifier=stage.name[:16])
        ctx.validation_results_store.set(key, result)
        stored += 1
    return stored


def build_data_docs(home: Path, contracts: list[Contract], today: str) -> Path:
    """Rebuild the Data Docs site: every contract's suites plus every checked batch's results."""
    ctx = _context(home)
    for contract in contracts:
        ctx.suites.add_or_update(gx.ExpectationSuite(name=f"{contract.name}.rows",
                                                     expectations=contract_expectations(contract, today)))
        ctx.suites.add_or_update(gx.ExpectationSuite(name=f"{contract.name}.batch",
                                                     expectations=batch_expectations(full_delivery=True)))
    staging = home / "staging"
    for stage in sorted(staging.iterdir()) if staging.exists() else []:
        if (stage / RESULTS_FILE).exists():
            _store_results(ctx, stage)
    ctx.build_data_docs(site_names=[SITE])
    secure_tree(project_root(home) / "gx")  # GX writes its files itself; the results list failed values
    return docs_index(home)
