"""The civicnet quality page: one static, self-contained HTML file per run.

Sections (each with a stable id): `batches`, `gate`, `quarantine`, `freshness`,
`reconciliation`, `reporting` (who has not submitted each periodic report), plus a link to the GX
Data Docs when they exist. The page has no script and
fetches nothing; every value is escaped, since departments and communities write much of it.
It is built from a status (`civicnet.pipeline.status.collect`), read through `quality.status_view`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any, Protocol

from quality.freshness import FreshnessRow
from quality.status_view import StatusView
from quality.verdict import ExpectationOutcome
from schemas.errors import TerminalError
from schemas.homefiles import make_folder, write_atomic
from schemas.i18n import DEFAULT_LANG, N_, format_time, parse_lang, translation
from schemas.layout import data_docs_index, pages_folder

DATA_DOCS = data_docs_index(Path())  # relative to <home>: the GX Data Docs the page links to
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


class _Gettext(Protocol):
    def __call__(self, message: str, /) -> str: ...


# machine words in the status, and their words for people (translated where shown)
STATES = {"applied": N_("applied"), "refused": N_("refused"), "pending": N_("pending")}
VERDICTS = {"pass": N_("pass"), "warn": N_("warn"), "fail": N_("fail")}
SEVERITIES = {"error": N_("error"), "warn": N_("warn")}
CADENCES = {"hourly": N_("hourly"), "daily": N_("daily"), "weekly": N_("weekly"), "monthly": N_("monthly"),
            "quarterly": N_("quarterly"), "yearly": N_("yearly")}
RUN_LABELS = {"run_id": N_("run"), "written_at": N_("written at")}


def _e(value: Any) -> str:
    """Any value as escaped text ('' for None)."""
    return "" if value is None else escape(str(value), quote=True)


def _n(value: Any) -> str:
    """A count with thousands separators."""
    return f"{int(value):,}" if value is not None else ""


def _table(headers: Sequence[str], rows: Iterable[tuple[str, Sequence[str]]], numeric: set[int],
           none: str = "-") -> str:
    """A table from already-escaped cells; each row comes with its CSS class ('' for none)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for cls, cells in rows:
        tds = "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(cells))
        body.append(f'<tr class="{cls}">{tds}</tr>' if cls else f"<tr>{tds}</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(headers)}">{_e(none)}</td></tr>')
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{body}</section>'


def _batches(status: StatusView, _: _Gettext, lang: str) -> str:
    errors = {g.batch_id: g.error for g in status.gate}
    rows = []
    for b in status.batches:
        refused = b.status != "applied"
        state = _e(_(STATES.get(b.status, b.status)))
        if refused and errors.get(b.batch_id):
            state += f'<div class="err">{_e(errors[b.batch_id])}</div>'
        rows.append(("bad" if refused else "", [
            _e(b.feed), _e(b.source_name), state, _e(_(VERDICTS.get(b.gate or "", "-"))),
            _e(format_time(b.received_at, lang)),
            _n(b.received), _n(b.applied), _n(b.quarantined), _n(b.duplicates), _n(b.held)]))
    total = len(status.batches)
    refused_n = sum(1 for b in status.batches if b.status != "applied")
    intro = _("{total} batches, {refused} refused. Each batch: received = applied + quarantined + duplicates "
              "(+ held when refused).").format(total=_n(total), refused=_n(refused_n))
    return f"<p>{_e(intro)}</p>" + _table(
        [_("feed"), _("source"), _("status"), _("gate verdict"), _("received at"), _("received"), _("applied"),
         _("quarantined"), _("duplicates"), _("held")], rows, {5, 6, 7, 8, 9}, _("none"))


def _detail(result: ExpectationOutcome, _: _Gettext) -> str:
    """What an unsuccessful expectation saw, in a few words."""
    parts = [result.description] if result.description else []
    if result.unexpected_count is not None:
        parts.append(_("{n} unexpected").format(n=f"{result.unexpected_count:,}"))
    if result.partial_unexpected:
        parts.append(_("e.g. {values}").format(values=", ".join(map(str, result.partial_unexpected))))
    if result.observed_value is not None:
        parts.append(_("observed {value}").format(value=result.observed_value))
    if result.exception:
        parts.append(result.exception)
    return "; ".join(parts)


def _gate(status: StatusView, _: _Gettext) -> str:
    rows = []
    for g in status.gate:
        verdict = _e(_(VERDICTS.get(g.verdict or "", "-")))
        for r in g.failed:
            rows.append(("bad" if r.severity == "error" else "warn", [
                _e(g.dataset), _e(g.batch_id[:12]), verdict, _e(r.expectation), _e(r.column),
                _e(_(SEVERITIES.get(r.severity, r.severity))), _e(_detail(r, _))]))
        if g.error and not g.failed:
            rows.append(("bad", [_e(g.dataset), _e(g.batch_id[:12]), verdict, _e(_("batch refused")), "",
                                 _e(_("error")), _e(g.error)]))
    checked = len(status.gate)
    intro = _("{n} batches checked; listed: expectations that failed (error) or warned.").format(n=_n(checked))
    return f"<p>{_e(intro)}</p>" + _table(
        [_("dataset"), _("batch"), _("verdict"), _("expectation"), _("column"), _("severity"), _("detail")],
        rows, set(), _("none"))


def _quarantine(status: StatusView, _: _Gettext) -> str:
    rows = []
    for dataset, by_dept in sorted(status.quarantine.items()):
        for dept, q in sorted(by_dept.items()):
            for code, count in sorted(q.by_reason.items()):
                rows.append(("", [_e(dataset), _e(dept), f"<code>{_e(code)}</code>", _n(count), _n(q.rows),
                                  _n(q.open), _n(q.released)]))
    intro = _("Rows held back with their reasons; a corrected re-submission of the same keys releases them.")
    return f"<p>{_e(intro)}</p>" + _table(
        [_("dataset"), _("sender department"), _("reason"), _("rows with reason"), _("rows (all reasons)"),
         _("open"), _("released")], rows, {3, 4, 5, 6}, _("none"))


def freshness_sentence(r: FreshnessRow, _: _Gettext, lang: str) -> str:
    """One scoreboard row for people, with absolute times only (the page is a file: no "ago")."""
    who = _("community {code}").format(code=r.community) if r.community else r.department
    cadence = _(CADENCES.get(r.cadence, r.cadence))
    if r.last_updated is None or r.due_by is None:
        text = _("Never updated; cadence {cadence}: late, {who} is due to send its first update.").format(
            cadence=cadence, who=who)
    elif r.late:
        text = _("Last updated {last}; cadence {cadence}: late, {who} was due to send an update by {due}.").format(
            last=format_time(r.last_updated, lang), cadence=cadence, who=who, due=format_time(r.due_by, lang))
    else:
        text = _("Last updated {last}; cadence {cadence}: on time, next update due by {due}.").format(
            last=format_time(r.last_updated, lang), cadence=cadence, due=format_time(r.due_by, lang))
    last, updated = r.last_received, r.last_updated
    if last is not None and (updated is None or last > updated):
        if r.last_status == "refused":
            text += " " + _("The newest batch, received {at}, was refused by the quality gate: see its rejection "
                            "report.").format(at=format_time(last, lang))
        elif r.last_status == "pending":
            text += " " + _("The newest batch, received {at}, is waiting to be checked.").format(
                at=format_time(last, lang))
    return text


def _freshness(status: StatusView, _: _Gettext, lang: str) -> str:
    items = sorted(status.freshness, key=lambda r: (not r.late, r.department, r.dataset, r.community or ""))
    # (no _() inside an f-string: Babel's extractor does not look into them)
    on_time_tag = '<span class="ok">' + _e(_("on time")) + "</span>"
    late_tag = '<span class="tag">' + _e(_("late")) + "</span>"
    rows = [("late" if r.late else "", [
        _e(r.department), _e(r.dataset), _e(r.community or ""), _e(_(CADENCES.get(r.cadence, r.cadence))),
        _e(format_time(r.last_updated, lang) or _("never")), _e(format_time(r.last_received, lang)),
        _e(_(STATES.get(r.last_status or "", r.last_status or ""))),
        late_tag if r.late else on_time_tag,
        _e(freshness_sentence(r, _, lang))]) for r in items]
    late = sum(1 for r in items if r.late)
    intro = _("Art. 25: each department keeps its own data current. {n} subjects, {late} late (period of the "
              "cadence plus a grace since the last applied batch).").format(n=_n(len(items)), late=_n(late))
    return f"<p>{_e(intro)}</p>" + _table(
        [_("department"), _("dataset"), _("community"), _("cadence"), _("last updated"), _("last received"),
         _("newest batch"), _("state"), _("for people")], rows, set(), _("none"))


def _reconciliation(status: StatusView, _: _Gettext, lang: str) -> str:
    result = status.reconciliation
    if result is None:
        return "<p>" + _e(_("Not run yet: civicnet verify checks every node against its parent.")) + "</p>"
    mismatches, remaining = result.mismatches, result.remaining
    cls = "err" if remaining else "ok"
    head = _("Checked {at}: {nodes} nodes, {mismatches} mismatches, {repaired} slices repaired, "
             "{remaining} remaining.").format(
        at=format_time(result.checked_at, lang), nodes=_n(result.nodes_checked),
        mismatches=_n(len(mismatches)), repaired=_n(len(result.repaired)), remaining=_n(len(remaining)))
    rows = [("bad" if m in remaining else "", [_e(m.node), _e(m.tier), _e(m.parent), _e(m.dataset),
                                               _e(m.division_code), _e(m.detail)])
            for m in mismatches]
    return f'<p class="{cls}">{_e(head)}</p>' + _table(
        [_("node"), _("tier"), _("parent"), _("dataset"), _("division"), _("detail")], rows, set(), _("none"))


def _rate(rate: Mapping[str, Any]) -> str:
    return "—" if rate.get("rate") is None else f"{rate['rate']:.1%}"


def _reporting(status: StatusView, _: _Gettext, lang: str) -> str:
    """Who has not submitted each periodic report, against the obligations (never above 100 %)."""
    if not status.reporting:
        return "<p>" + _e(_("No periodic report is owed yet: the home has no city node.")) + "</p>"
    parts = []
    for found in status.reporting:
        for report, rate in found["rate"].items():
            head = _("{report}, {period}: {submitted} of {expected} obligations submitted ({rate}); the units in "
                     "force on the period's last day owe it, as of {as_of}.").format(
                report=report, period=found["period"], submitted=_n(rate["submitted"]),
                expected=_n(rate["expected"]), rate=_rate(rate), as_of=format_time(found["as_of"], lang))
            districts = [("", [_e(code), _e(d.get("name", "")), _n(d["expected"]), _n(d["submitted"]),
                               _e(_rate(d))]) for code, d in sorted(rate["by_district"].items())]
            parts.append(f"<p>{_e(head)}</p>" + _table(
                [_("district"), _("name"), _("expected"), _("submitted"), _("rate")], districts, {2, 3, 4}, _("none")))
            unexpected = found["unexpected"].get(report) or []
            if unexpected:
                parts.append('<p class="err">' + _e(_("Submitted without an obligation (not counted): {units}").format(
                    units=", ".join(unexpected))) + "</p>")
        missing = [("late" if m["overdue"] else "", [_e(m["report"]), _e(m["unit"]), _e(m["name"]), _e(m["due"]),
                                                     _e(m["lock"]), _e(_("overdue") if m["overdue"] else _("not due"))])
                   for m in found["missing"]]
        parts.append(_table([_("report"), _("unit"), _("name"), _("due"), _("locks"), _("state")], missing, set(),
                            _("every obligation has a submission")))
    return "".join(parts)


def render_page(status: StatusView, run: dict[str, Any] | None, lang: str = DEFAULT_LANG) -> str:
    """The quality page as one HTML document (inline CSS, no script, every value escaped)."""
    lang = parse_lang(lang)
    _ = translation(lang).gettext
    run = run or {}
    meta = " · ".join(_e(_(RUN_LABELS.get(k, k))) + " " + _e(format_time(v, lang) if k == "written_at" else v)
                      for k, v in run.items())
    docs = data_docs_index(status.home)
    docs_link = (f'<p><a href="{_e(os.path.relpath(docs, pages_folder(status.home)))}">'
                 + _e(_("Great Expectations Data Docs (suites and validation results)")) + "</a></p>"
                 if docs.exists() else "")
    sections = [("batches", _("Batches"), _batches(status, _, lang)), ("gate", _("Quality gate"), _gate(status, _)),
                ("quarantine", _("Quarantine by reason and sender"), _quarantine(status, _)),
                ("freshness", _("Freshness scoreboard"), _freshness(status, _, lang)),
                ("reconciliation", _("Reconciliation across tiers"), _reconciliation(status, _, lang)),
                ("reporting", _("Periodic reports: who has not submitted"), _reporting(status, _, lang))]
    nav = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t, _body in sections)
    facts = _("home {home} · division vintage {vintage} · {nodes} nodes").format(
        home=status.home, vintage=status.vintage, nodes=_n(len(status.nodes)))
    html_lang = "zh-CN" if lang == "zh_CN" else "en"
    title = _e(_("civicnet quality report"))
    return ("<!DOCTYPE html>\n" f'<html lang="{html_lang}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title} {_e(run.get('run_id', ''))}</title><style>{CSS}</style>"
            f"</head><body><h1>{title}</h1><p class=\"meta\">{meta}</p>"
            f'<p class="meta">{_e(facts)}</p><nav>{nav}</nav>{docs_link}'
            + "".join(_section(a, t, body) for a, t, body in sections) + "</body></html>\n")


def write_quality_page(home: Path, status: StatusView, run_id: str | None = None,
                       lang: str = DEFAULT_LANG) -> Path:
    """Write <home>/reports/quality/<run_id>.html from a status (`civicnet.pipeline.status.collect`) and
    replace index.html with it (both atomically); returns the run's page.

    `run_id` defaults to the UTC time of writing (it names the file: letters, digits, . _ - only)."""
    written = dt.datetime.now(dt.UTC)
    run_id = run_id or written.strftime("%Y%m%dT%H%M%SZ")
    if not _RUN_ID.match(run_id):
        raise PageError(f"run id {run_id!r} cannot name a page file in {pages_folder(home)}; use 1-128 letters, "
                        "digits, '.', '_' or '-' (an Airflow run id with ':' or '+' must be slugged first)")
    page = render_page(status, {"run_id": run_id, "written_at": written.isoformat(timespec="seconds")}, lang)
    folder = pages_folder(home)
    make_folder(folder)
    path = folder / f"{run_id}.html"
    write_atomic(path, page)
    write_atomic(folder / "index.html", page)
    return path
