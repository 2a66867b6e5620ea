"""GX Data Docs for the contract suites and every batch's validation results.

The gate validates each batch in a context held in memory (no shared files between parallel
tasks) and keeps GX's results beside the batch (`staging/<batch>/gx_results.json`). This module
builds the Data Docs site from them in one file-backed GX project, `<home>/quality/gx/`: the
suites generated from today's contracts, and one validation result per batch suite, named by
batch. The site's index is `<home>/quality/gx/data_docs/index.html`.

The built site is then made self-contained and given each batch's quarantine
(`quality.docs_site`): GX's own pages fetch their styles and scripts from CDNs.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import great_expectations as gx
import pyarrow.compute as pc
from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResultSchema
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)

import quality.expectations  # noqa: F401  (registers the custom expectations the suites use)
from quality.docs_site import BatchQuarantine, add_quarantine_to_page, index_page, make_self_contained
from quality.stage import RESULTS_FILE, quarantined_rows, read_check, stage_dirs
from quality.suite import batch_expectations, contract_expectations
from schemas.contract import Contract
from schemas.homefiles import make_folder, secure_tree
from schemas.i18n import DEFAULT_LANG
from schemas.layout import data_docs_index, quality_folder

SITE = "local_site"


def project_root(home: Path) -> Path:
    """Where the GX project lives (`gx/` inside it)."""
    return quality_folder(home)


def docs_index(home: Path) -> Path:
    """The Data Docs entry page."""
    return data_docs_index(home)


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


def _by_reason(stage: Path) -> dict[str, int]:
    """Quarantined rows of a staged batch counted by reason code (a row with two reasons counts in both)."""
    held = quarantined_rows(stage, columns=["reasons"])
    if held is None:
        return {}
    reasons = held.column("reasons")
    if len(reasons) == 0:
        return {}
    codes = pc.struct_field(pc.list_flatten(reasons), "code")
    counts = pc.value_counts(codes).to_pylist()
    return {str(c["values"]): int(c["counts"]) for c in counts}


def batch_quarantine(stage: Path) -> BatchQuarantine | None:
    """What staging recorded of one checked batch (None when it was never checked)."""
    check = read_check(stage)
    if check is None:
        return None
    results = stage / RESULTS_FILE
    checked = (dt.datetime.fromtimestamp(results.stat().st_mtime, dt.UTC).isoformat(timespec="seconds")
               if results.exists() else None)
    return BatchQuarantine(
        batch_id=stage.name, dataset=check.dataset, feed=check.feed, received=check.received,
        accepted=check.accepted, quarantined=check.quarantined, duplicates=check.duplicates,
        verdict=check.verdict, checked_at=checked, by_reason=_by_reason(stage))


def _site_pages(site: Path, q: BatchQuarantine) -> dict[str, str]:
    """The validation pages of one batch in the built site, by suite part, relative to the site."""
    found = {}
    for page in sorted((site / "validations" / q.dataset).glob(f"*/{q.batch_id[:16]}/*/*.html")):
        found[page.relative_to(site / "validations" / q.dataset).parts[0]] = page.relative_to(site).as_posix()
    return found


def _finish_site(site: Path, batches: list[BatchQuarantine], lang: str) -> None:
    """Quarantine beside each batch's validations, a static index, and nothing fetched from outside."""
    listed = []
    for q in batches:
        pages = _site_pages(site, q)
        for rel in pages.values():
            page = site / rel
            page.write_text(add_quarantine_to_page(page.read_text("utf-8"), q, lang), "utf-8")
        listed.append(BatchQuarantine(**{**q.__dict__, "pages": pages}))
    suites = {f"{p.parent.name}.{p.stem}": p.relative_to(site).as_posix()
              for p in sorted((site / "expectations").glob("*/*.html"))}
    (site / "index.html").write_text(index_page(listed, suites, lang), "utf-8")
    make_self_contained(site)


def build_data_docs(home: Path, contracts: list[Contract], today: str, lang: str = DEFAULT_LANG) -> Path:
    """Rebuild the Data Docs site: every contract's suites plus every checked batch's results, each
    beside its quarantine, self-contained (no file fetched from outside)."""
    ctx = _context(home)
    for contract in contracts:
        ctx.suites.add_or_update(gx.ExpectationSuite(name=f"{contract.name}.rows",
                                                     expectations=contract_expectations(contract, today)))
        ctx.suites.add_or_update(gx.ExpectationSuite(name=f"{contract.name}.batch",
                                                     expectations=batch_expectations(full_delivery=True)))
    batches = []
    for stage in stage_dirs(home):
        if (stage / RESULTS_FILE).exists():
            _store_results(ctx, stage)
            q = batch_quarantine(stage)
            if q is not None:
                batches.append(q)
    ctx.build_data_docs(site_names=[SITE])
    _finish_site(docs_index(home).parent, batches, lang)
    secure_tree(project_root(home) / "gx")  # GX writes its files itself; the results list failed values
    return docs_index(home)
