"""Make a built GX Data Docs site self-contained, and put each batch's quarantine beside its results.

GX 1.x renders Data Docs with Bootstrap, jQuery, bootstrap-table, Vega and Font Awesome from
public CDNs and its logo from a public bucket (templates `page.j2`, `js_script_imports.j2`,
`top_navbar.j2`; it ships only its own CSS, fonts and images in `render/view/static`). Its
`plugins/custom_data_docs/views` cannot replace those templates: GX's `DefaultJinjaView` puts the
custom loaders *after* its package loader, so a same-named template is never chosen. Offline
(a district machine, an official's laptop) the pages are unstyled and the index, drawn by
bootstrap-table, is empty. So after GX builds the site, this module rewrites every page:

- every external `<link>`/`<script>` and every inline script (they all need jQuery) is removed,
  and civicnet's stylesheet (`quality/static/data_docs.css`, covering the Bootstrap classes GX
  uses) is linked from the site's own `static/styles/`;
- the logo, the CSS `url()` of the logo and links to GX's web site point nowhere outside;
- the index is rewritten as a static page: every batch with its validations, its verdict and
  its quarantine (rows held back by the row checks, by reason), and every suite;
- each batch's validation pages get a block with the same quarantine counts, so a page whose
  expectations all passed on the accepted rows no longer reads as "100 % of the batch".
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from schemas.i18n import format_time, translation

STYLESHEET = Path(__file__).parent / "static" / "data_docs.css"
SITE_CSS = Path("static") / "styles" / "civicnet_data_docs.css"
LOGO = Path("static") / "images" / "logo-long.png"

_EXTERNAL_LINK = re.compile(r"<link\b[^>]*\bhref=[\"']?(?:https?:)?//[^>]*>", re.I)
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.I | re.S)
_EXTERNAL_IMG = re.compile(r"(<img\b[^>]*\bsrc=)[\"'](?:https?:)?//[^\"']*[\"']", re.I)
_EXTERNAL_ANCHOR = re.compile(r"<a\b[^>]*\bhref=[\"'](?:https?:)?//[^\"']*[\"'][^>]*>(.*?)</a\s*>", re.I | re.S)
_EXTERNAL_URL = re.compile(r"url\(\s*[\"']?(?:https?:)?//[^)]*\)", re.I)
_EVENT_ATTR = re.compile(r"\s on[a-z]+=\"[^\"]*\"", re.I | re.X)
_LOCAL_STATIC = re.compile(r"""((?:src|href)=["'])(?:\./|\.\./)*static/""", re.I)  # GX misses a level on some
_ANY_EXTERNAL = re.compile(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//|url\(\s*[\"']?(?:https?:)?//", re.I)


@dataclass(frozen=True)
class BatchQuarantine:
    """What the row checks held back from one batch, as staging recorded it."""

    batch_id: str
    dataset: str
    feed: str
    received: int
    accepted: int
    quarantined: int
    duplicates: int
    verdict: str
    checked_at: str | None  # ISO time the gate wrote its results
    by_reason: dict[str, int] = field(default_factory=dict)
    pages: dict[str, str] = field(default_factory=dict)  # suite part (rows, batch) -> page path in the site


def offline_html(html: str, site_root_rel: str) -> str:
    """One GX page with nothing fetched from outside: civicnet's stylesheet, the local logo, no scripts."""
    css = f'<link rel="stylesheet" href="{escape(_join(site_root_rel, SITE_CSS), quote=True)}">'
    html = _EXTERNAL_LINK.sub("", html)
    html = _SCRIPT.sub("", html)
    html = _EVENT_ATTR.sub("", html)
    html = _EXTERNAL_IMG.sub(lambda m: f'{m.group(1)}"{escape(_join(site_root_rel, LOGO), quote=True)}"', html)
    html = _EXTERNAL_ANCHOR.sub(lambda m: m.group(1), html)
    html = _EXTERNAL_URL.sub("none", html)
    html = _LOCAL_STATIC.sub(lambda m: m.group(1) + _join(site_root_rel, Path("static")) + "/", html)
    if SITE_CSS.name in html:  # rewritten before (a page GX did not render again)
        return html
    return html.replace("</head>", f"{css}</head>", 1) if "</head>" in html else css + html


def external_references(text: str) -> list[str]:
    """Every src/href/url() of a text that points outside the site (empty when self-contained)."""
    return [text[m.start():m.start() + 80] for m in _ANY_EXTERNAL.finditer(text)]


def _join(rel: str, path: Path) -> str:
    return "/".join(p for p in (rel, path.as_posix()) if p and p != ".")


def _rel_root(page: Path, site: Path) -> str:
    return os.path.relpath(site, page.parent).replace(os.sep, "/")


def make_self_contained(site: Path) -> None:
    """Rewrite every page and stylesheet of a built site so it fetches nothing from outside."""
    (site / SITE_CSS).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(STYLESHEET, site / SITE_CSS)
    for page in sorted(site.rglob("*.html")):
        page.write_text(offline_html(page.read_text("utf-8"), _rel_root(page, site)), "utf-8")
    for sheet in sorted(site.rglob("*.css")):
        sheet.write_text(_EXTERNAL_URL.sub("none", sheet.read_text("utf-8")), "utf-8")


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f} %" if whole else "0 %"


def quarantine_block(q: BatchQuarantine, lang: str | None) -> str:
    """The quarantine of one batch as an HTML block (escaped), for its validation pages and the index."""
    _ = translation(lang).gettext
    if q.quarantined == 0:
        head = _("Row checks: all {received} rows of this batch were accepted; none were quarantined.").format(
            received=f"{q.received:,}")
        return f'<section id="civicnet-quarantine" class="cn-quarantine cn-ok"><p>{escape(head)}</p></section>'
    head = _("Row checks: {quarantined} of {received} rows of this batch ({share}) were quarantined and are "
             "not in the validation below, which saw only the {accepted} accepted rows.").format(
        quarantined=f"{q.quarantined:,}", received=f"{q.received:,}", share=_pct(q.quarantined, q.received),
        accepted=f"{q.accepted:,}")
    rows = "".join(f'<tr><td><code>{escape(code)}</code></td><td class="n">{n:,}</td></tr>'
                   for code, n in sorted(q.by_reason.items(), key=lambda kv: (-kv[1], kv[0])))
    code_head, rows_head = escape(_("reason code")), escape(_("rows"))  # no _() inside f-strings (Babel)
    table = (f'<table class="table table-sm cn-reasons"><thead><tr><th>{code_head}</th>'
             f'<th>{rows_head}</th></tr></thead><tbody>{rows}</tbody></table>')
    return (f'<section id="civicnet-quarantine" class="cn-quarantine cn-held"><p><strong>{escape(head)}</strong></p>'
            f"{table}</section>")


def add_quarantine_to_page(html: str, q: BatchQuarantine, lang: str | None) -> str:
    """A validation page with the batch's quarantine block at the top of its main content."""
    if 'id="civicnet-quarantine"' in html:
        return html
    block = quarantine_block(q, lang)
    anchor = re.search(r'<div class="container-fluid[^"]*">', html)
    if anchor is None:
        anchor = re.search(r"<body[^>]*>", html)
    if anchor is None:
        return block + html
    return html[:anchor.end()] + block + html[anchor.end():]


def _verdict_cell(q: BatchQuarantine, lang: str | None) -> tuple[str, str]:
    _ = translation(lang).gettext
    if q.verdict == "fail":
        return "bad", _("refused by the gate")
    if q.quarantined:
        return "held", _("applied, {n} rows quarantined ({share})").format(
            n=f"{q.quarantined:,}", share=_pct(q.quarantined, q.received))
    if q.verdict == "warn":
        return "held", _("applied with warnings")
    return "ok", _("applied, every row accepted")


def index_page(batches: list[BatchQuarantine], suites: dict[str, str], lang: str | None) -> str:
    """The site's index as a static page: batches with their validations and quarantine, then the suites."""
    _ = translation(lang).gettext
    heads = [_("dataset"), _("feed"), _("batch"), _("checked at"), _("result"), _("received"), _("accepted"),
             _("quarantined"), _("duplicates"), _("quarantine by reason"), _("validation results")]
    rows = []
    for q in sorted(batches, key=lambda b: (b.checked_at or "", b.batch_id), reverse=True):
        cls, verdict = _verdict_cell(q, lang)
        reasons = ", ".join(f"{escape(code)} {n:,}" for code, n in sorted(q.by_reason.items())) or "-"
        links = " · ".join(f'<a href="{escape(path, quote=True)}">{escape(q.dataset)}.{escape(part)}</a>'
                           for part, path in sorted(q.pages.items()))
        cells = [escape(q.dataset), escape(q.feed), f"<code>{escape(q.batch_id[:16])}</code>",
                 escape(format_time(q.checked_at, lang)), escape(verdict), f"{q.received:,}", f"{q.accepted:,}",
                 f"{q.quarantined:,}", f"{q.duplicates:,}", reasons, links]
        rows.append(f'<tr class="cn-{cls}">' + "".join(
            f'<td class="n">{c}</td>' if 5 <= i <= 8 else f"<td>{c}</td>" for i, c in enumerate(cells)) + "</tr>")
    suite_rows = "".join(f'<li><a href="{escape(path, quote=True)}">{escape(name)}</a></li>'
                         for name, path in sorted(suites.items()))
    lang_attr = "en" if translation(lang).gettext("dataset") == "dataset" else "zh-CN"
    title = _("civicnet: Great Expectations Data Docs")
    batches_head, suites_head = escape(_("Batches")), escape(_("Expectation suites"))  # not in f-strings (Babel)
    intro = _("Every checked batch, newest first: the gate's verdict on its accepted rows and, beside it, the "
              "rows the row checks quarantined. A batch is only complete when quarantined rows are resent.")
    return ("<!DOCTYPE html>\n"
            f'<html lang="{lang_attr}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title></head><body><div class=\"container-fluid cn-index\">"
            f"<h1>{escape(title)}</h1><p>{escape(intro)}</p>"
            f'<section id="batches"><h2>{batches_head}</h2><div class="table-responsive">'
            f'<table class="table table-sm"><thead><tr>{"".join(f"<th>{escape(h)}</th>" for h in heads)}</tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table></div></section>'
            f'<section id="suites"><h2>{suites_head}</h2><ul>{suite_rows}</ul></section>'
            "</div></body></html>\n")
