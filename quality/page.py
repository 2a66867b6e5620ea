"""The civicnet quality page: one static, self-contained HTML file per run.

Sections (each with a stable id): `batches`, `gate`, `quarantine`, `freshness`,
`reconciliation`, plus a link to the GX Data Docs when they exist. The page has no script and
fetches nothing; every value is escaped, since departments and communities write much of it.
It is built from the dict `civicnet status --json` prints (`civicnet.status.collect`).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any

from schemas.errors import TerminalError
from schemas.homefiles import make_folder, write_atomic

# relative to <home>: where GX Data Docs are built, and where quality pages are written
DATA_DOCS = Path("quality") / "gx" / "data_docs" / "index.html"
PAGES = Path("reports") / "quality"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class PageError(TerminalError):
    """A quality page cannot be written as asked."""

CSS = """
body{font:15px/1.45 system-ui,"Noto Sans CJK SC","PingFang SC","Microsoft YaHei",sans-serif;
margin:0 auto;max-width:1200px;padding:0 12px 40px;color:#1d2330;background:#fff}
h1{font-size:1.4em;margin:.8em 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .4em;border-bottom:2px solid #d5dae3}
.meta{color:#5a6272;margin:0}nav a{margin-right:1em}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;font-size:.92em}
th,td{border-bottom:1px solid #e3e6ec;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f5f8}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.bad td{background:#fde8e8}tr.late td,tr.warn td{background:#fff1d6}
.err{color:#9b1c1c;font-size:.9em}.ok{color:#1c6b3a}.tag{font-weight:600}
@media (max-width:640px){body{font-size:14px}th,td{padding:3px 5px}}
"""


def _e(value: Any) -> str:
    """Any value as escaped text ('' for None)."""
    return "" if value is None else escape(str(value), quote=True)


def _n(value: Any) -> str:
    """A count with thousands separators."""
    return f"{int(value):,}" if value is not None else ""


def _table(headers: Sequence[str], rows: Iterable[tuple[str, Sequence[str]]], numeric: set[int]) -> str:
    """A table from already-escaped cells; each row comes with its CSS class ('' for none)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for cls, cells in rows:
        tds = "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(cells))
        body.append(f'<tr class="{cls}">{tds}</tr>' if cls else f"<tr>{tds}</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(headers)}">none</td></tr>')
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _utc(iso: str | None) -> str:
    """An ISO time as 'YYYY-MM-DD HH:MM' in UTC ('' for None)."""
    return "" if iso is None else dt.datetime.fromisoformat(iso).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{body}</section>'


def _batches(status: dict[str, Any]) -> str:
    errors = {g["batch_id"]: g.get("error") for g in status.get("gate", [])}
    rows = []
    for b in status.get("batches", []):
        refused = b["status"] != "applied"
        state = _e(b["status"])
        if refused and errors.get(b["batch_id"]):
            state += f'<div class="err">{_e(errors[b["batch_id"]])}</div>'
        rows.append(("bad" if refused else "", [
            _e(b["feed"]), _e(b["source_name"]), state, _e(b.get("gate") or "-"), _e(b["received_at"]),
            _n(b["received"]), _n(b["applied"]), _n(b["quarantined"]), _n(b["duplicates"]), _n(b["held"])]))
    total = len(status.get("batches", []))
    refused_n = sum(1 for b in status.get("batches", []) if b["status"] != "applied")
    intro = (f'<p>{_n(total)} batches, {_n(refused_n)} refused. Each batch: received = applied + quarantined '
             "+ duplicates (+ held when refused).</p>")
    return intro + _table(["feed", "source", "status", "gate verdict", "received at", "received", "applied",
                           "quarantined", "duplicates", "held"], rows, {5, 6, 7, 8, 9})


def _detail(result: dict[str, Any]) -> str:
    """What an unsuccessful expectation saw, in a few words."""
    parts = [str(result["description"])] if result.get("description") else []
    if result.get("unexpected_count") is not None:
        parts.append(f"{int(result['unexpected_count']):,} unexpected")
    if result.get("partial_unexpected"):
        parts.append("e.g. " + ", ".join(map(str, result["partial_unexpected"])))
    if result.get("observed_value") is not None:
        parts.append(f"observed {result['observed_value']}")
    if result.get("exception"):
        parts.append(str(result["exception"]))
    return "; ".join(parts)


def _gate(status: dict[str, Any]) -> str:
    rows = []
    for g in status.get("gate", []):
        for r in g.get("failed", []):
            severity = r.get("severity") or "error"
            rows.append(("bad" if severity == "error" else "warn", [
                _e(g["dataset"]), _e(g["batch_id"][:12]), _e(g.get("verdict")), _e(r.get("expectation")),
                _e(r.get("column")), _e(severity), _e(_detail(r))]))
        if g.get("error") and not g.get("failed"):
            rows.append(("bad", [_e(g["dataset"]), _e(g["batch_id"][:12]), _e(g.get("verdict")),
                                 "batch refused", "", "error", _e(g["error"])]))
    checked = len(status.get("gate", []))
    return (f"<p>{_n(checked)} batches checked; listed: expectations that failed (error) or warned.</p>"
            + _table(["dataset", "batch", "verdict", "expectation", "column", "severity", "detail"], rows, set()))


def _quarantine(status: dict[str, Any]) -> str:
    rows = []
    for dataset, by_dept in sorted(status.get("quarantine", {}).items()):
        for dept, q in sorted(by_dept.items()):
            for code, count in sorted(q.get("by_reason", {}).items()):
                rows.append(("", [_e(dataset), _e(dept), _e(code), _n(count), _n(q.get("rows")),
                                  _n(q.get("open")), _n(q.get("released"))]))
    return ("<p>Rows held back with their reasons; a corrected re-submission of the same keys releases them.</p>"
            + _table(["dataset", "sender department", "reason", "rows with reason", "rows (all reasons)",
                      "open", "released"], rows, {3, 4, 5, 6}))


def _freshness(status: dict[str, Any]) -> str:
    items = sorted(status.get("freshness", []),
                   key=lambda r: (not r["late"], r["department"], r["dataset"], r.get("community") or ""))
    rows = [("late" if r["late"] else "", [
        _e(r["department"]), _e(r["dataset"]), _e(r.get("community") or ""), _e(r["cadence"]),
        _e(_utc(r.get("last_updated")) or "never"), _e(_utc(r.get("last_received"))), _e(r.get("last_status") or ""),
        '<span class="tag">late</span>' if r["late"] else '<span class="ok">on time</span>', _e(r["sentence"])])
        for r in items]
    late = sum(1 for r in items if r["late"])
    return (f"<p>Art. 25: each department keeps its own data current. {_n(len(items))} subjects, {_n(late)} late "
            "(period of the cadence plus a grace since the last applied batch).</p>"
            + _table(["department", "dataset", "community", "cadence", "last updated (UTC)",
                      "last received (UTC)", "newest batch", "state", "for people"], rows, set()))


def _reconciliation(status: dict[str, Any]) -> str:
    result = status.get("reconciliation")
    if result is None:
        return "<p>Not run yet: <code>civicnet verify</code> checks every node against its parent.</p>"
    mismatches, repaired = result.get("mismatches", []), result.get("repaired", [])
    remaining = result.get("remaining", mismatches)
    cls = "err" if remaining else "ok"
    head = (f'<p class="{cls}">Checked {_e(result.get("checked_at"))}: {_n(result.get("nodes_checked", 0))} nodes, '
            f"{_n(len(mismatches))} mismatches, {_n(len(repaired))} slices repaired, "
            f"{_n(len(remaining))} remaining.</p>")
    rows = [("bad" if m in remaining else "", [_e(m.get("node")), _e(m.get("tier")), _e(m.get("parent")),
                                               _e(m.get("dataset")), _e(m.get("division")), _e(m.get("detail"))])
            for m in mismatches]
    return head + _table(["node", "tier", "parent", "dataset", "division", "detail"], rows, set())


def render_page(status: dict[str, Any], run: dict[str, Any] | None) -> str:
    """The quality page as one HTML document (inline CSS, no script, every value escaped)."""
    run = run or {}
    meta = " · ".join(f"{_e(k)} {_e(v)}" for k, v in run.items())
    docs = Path(status["home"]) / DATA_DOCS
    docs_link = (f'<p><a href="{_e(os.path.relpath(docs, Path(status["home"]) / PAGES))}">'
                 "Great Expectations Data Docs (suites and validation results)</a></p>" if docs.exists() else "")
    sections = [("batches", "Batches", _batches(status)), ("gate", "Quality gate", _gate(status)),
                ("quarantine", "Quarantine by reason and sender", _quarantine(status)),
                ("freshness", "Freshness scoreboard", _freshness(status)),
                ("reconciliation", "Reconciliation across tiers", _reconciliation(status))]
    nav = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t, _ in sections)
    return ("<!DOCTYPE html>\n" f'<html lang="zh-CN"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>civicnet quality {_e(run.get('run_id', ''))}</title><style>{CSS}</style></head><body>"
            f"<h1>civicnet quality report</h1><p class=\"meta\">{meta}</p>"
            f'<p class="meta">home {_e(status["home"])} · division vintage {_e(status.get("vintage"))} · '
            f"{_n(len(status.get('nodes', [])))} nodes</p><nav>{nav}</nav>{docs_link}"
            + "".join(_section(a, t, body) for a, t, body in sections) + "</body></html>\n")


def write_quality_page(home: Path, status: dict[str, Any], run_id: str | None = None) -> Path:
    """Write <home>/reports/quality/<run_id>.html from a `civicnet.status.collect` dict and
    replace index.html with it (both atomically); returns the run's page.

    `run_id` defaults to the UTC time of writing (it names the file: letters, digits, . _ - only)."""
    written = dt.datetime.now(dt.UTC)
    run_id = run_id or written.strftime("%Y%m%dT%H%M%SZ")
    if not _RUN_ID.match(run_id):
        raise PageError(f"run id {run_id!r} cannot name a page file in {home / PAGES}; use 1-128 letters, "
                        "digits, '.', '_' or '-' (an Airflow run id with ':' or '+' must be slugged first)")
    page = render_page(status, {"run_id": run_id, "written_at": written.isoformat(timespec="seconds")})
    folder = home / PAGES
    make_folder(folder)
    path = folder / f"{run_id}.html"
    write_atomic(path, page)
    write_atomic(folder / "index.html", page)
    return path
