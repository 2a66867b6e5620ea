"""The quality page of a real home renders in headless Chromium (Debian's chromium package).

Needs chromium on PATH (never skips): `make test` installs it when it is missing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import struct
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conftest import AS_OF

from civicnet import context, pipeline
from civicnet.pipeline.status import Status, collect, freshness, quality_page
from civicnet.pipeline.verify import write_reconciliation
from connectors.parse import read_payload
from connectors.push.senders import add_sender
from schemas.media import CSV
from warehouse import landing
from warehouse.check import VerifyReport
from warehouse.reconcile import Mismatch

pytestmark = pytest.mark.slow  # headless Chromium runs on a built home

SECTIONS = ("batches", "gate", "quarantine", "freshness", "reconciliation")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0"]
# judged two days after the build: the daily residents feed is late, the monthly facilities are not
LATER = dt.timedelta(days=2)


@pytest.fixture(scope="module")
def chromium() -> str:
    """The chromium binary (asked for first, so a missing browser fails before the home is built)."""
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is not installed: run `make test` (it installs Debian's chromium package) or "
                    "`apt-get install chromium`")
    return found


def run_chromium(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run with its own throwaway profile."""
    return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=60, check=True)


@pytest.fixture(scope="module")
def page(chromium: str, tmp_path_factory: pytest.TempPathFactory,
         home_copy: Callable[[Path], Path]) -> tuple[Path, Status]:
    """A real home (plus a community sender and a reconciliation result) and its quality page."""
    home = home_copy(tmp_path_factory.mktemp("quality_page"))
    community = min(d.code for d in context.registry().by_tier("community"))
    add_sender(home, "ws-page-test", "community", None, community)
    (home / "quality").mkdir(parents=True, exist_ok=True)
    differs = Mismatch(community, "community", community[:9] + "000", "residents", community, "rows", "12", "11")
    write_reconciliation(home, VerifyReport(dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC), 899, [differs],
                                            remaining=[differs]))
    now = dt.datetime.now(dt.UTC) + LATER
    # English: the assertions below read the page's words (zh-CN, the default, is checked in test_page_is_chinese)
    return quality_page(home, "it-run", now, lang="en"), collect(home, now)


class _Dom(HTMLParser):
    """Element ids, script tags, and the text of each table row with its class."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.scripts = 0
        self.rows: list[tuple[str, str]] = []
        self._row: list[str] | None = None
        self._class = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(str(found["id"]))
        self.scripts += tag == "script"
        if tag == "tr":
            self._row, self._class = [], found.get("class") or ""

    def handle_data(self, data: str) -> None:
        if self._row is not None:
            self._row.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._row is not None:
            self.rows.append((self._class, " ".join(self._row)))
            self._row = None


def test_dom_has_every_section_counts_and_late_rows(chromium: str, page: tuple[Path, Status],
                                                    tmp_path: Path) -> None:
    path, status = page
    assert (path.parent / "index.html").read_text("utf-8") == path.read_text("utf-8")
    done = run_chromium(chromium, tmp_path / "profile", "--dump-dom", path.as_uri())
    assert "Uncaught" not in done.stderr and ":CONSOLE" not in done.stderr
    dom = _Dom()
    dom.feed(done.stdout)
    assert set(SECTIONS) <= dom.ids
    assert dom.scripts == 0
    batch_rows = [text for _, text in dom.rows if text.split(" ")[0] in {b.feed for b in status.batches}]
    assert len(status.batches) == 3 and len(batch_rows) == 3
    for b, text in zip(status.batches, batch_rows, strict=True):
        assert text.startswith(b.feed)
        for key in ("received", "applied", "quarantined"):
            assert f"{getattr(b, key):,}" in text.split(), (key, text)
    late = [text for cls, text in dom.rows if cls == "late"]
    assert any(text.startswith("public_security residents") and "was due to send an update by" in text
               for text in late), late
    assert any("health_stations" in text and "never" in text for text in late)
    assert any("community:" in text and "community_expenditures" in text for text in late)
    on_time = [text for cls, text in dom.rows if cls == "" and text.startswith("civil_affairs facilities")]
    assert on_time and "on time" in on_time[0]
    mismatch = [text for cls, text in dom.rows if cls == "bad" and "rows: parent 12, node 11" in text]
    assert status.reconciliation is not None
    assert mismatch and mismatch[0].startswith(status.reconciliation.mismatches[0].node)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_screenshot_is_not_blank(chromium: str, page: tuple[Path, Status], tmp_path: Path) -> None:
    path, _ = page
    blank = tmp_path / "blank.html"
    blank.write_text('<!DOCTYPE html><html lang="zh-CN"><body></body></html>', "utf-8")
    shots = {}
    for name, target in (("page", path), ("blank", blank)):
        shot = tmp_path / f"{name}.png"
        run_chromium(chromium, tmp_path / f"profile-{name}", f"--screenshot={shot}", "--window-size=1280,2000",
                     target.as_uri())
        shots[name] = shot.read_bytes()
        assert _png_size(shots[name]) == (1280, 2000)
    # an empty white page compresses to a few KB; tables of text do not
    assert len(shots["page"]) > 50_000
    assert len(shots["page"]) > 5 * len(shots["blank"])


def _push_as_community(home: Path, community: str) -> str:
    """Land one expenditure report as the gateway does for a community sender; returns its batch id."""
    data = ("支出编号,社区代码,年度,季度,支出类别,金额,说明\n"
            f"E{community}-2021Q2-001,{community},2021,2,office,1234.5,printer paper\n").encode()
    table = read_payload(data, CSV, "utf-8", "report.csv")
    manifest = landing.Manifest(
        batch_id=hashlib.sha256(data).hexdigest(), feed="community_expenditures", department=f"community:{community}",
        dataset="community_expenditures", source_name="report.csv", media_type=CSV, encoding="utf-8",
        byte_size=len(data), row_count=table.num_rows, received_at=landing.utc_now(), cursor={},
        sender="ws-page-test", scope=community)
    assert landing.land(home, manifest, data, table)
    return manifest.batch_id


def test_community_row_follows_its_pushed_batch(page: tuple[Path, Status]) -> None:
    home = page[0].parent.parent.parent
    community = min(d.code for d in context.registry().by_tier("community"))

    def row() -> dict[str, Any]:
        rows = [r.to_dict() for r in freshness(home) if r.community == community]
        assert len(rows) == 1 and rows[0]["senders"] == ["ws-page-test"]
        return rows[0]

    assert row()["last_received"] is None and row()["late"]
    _push_as_community(home, community)
    pending = row()
    assert pending["last_status"] == "pending" and pending["last_updated"] is None and pending["late"]
    assert "waiting to be checked" in pending["sentence"]
    pipeline.ingest_feed(home, "community_expenditures", AS_OF)
    applied = row()
    assert applied["last_status"] == "applied" and not applied["late"]
    assert applied["last_updated"] == pending["last_received"]
    department = next(r for r in freshness(home) if r.feed == "community_expenditures" and r.community is None)
    assert department.last_received is None  # the community's batch is not the department's update


# --- GX Data Docs: self-contained, and each batch's quarantine beside its validation (issue 9, item 17)

OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost"]  # no name resolves: the network is off
_PROBE = """<script>
window.addEventListener('load', () => {
  const q = document.querySelector('#civicnet-quarantine.cn-held, tr.cn-held td');
  const t = document.querySelector('table');
  const links = [...document.querySelectorAll('link[rel=stylesheet]')];
  document.body.setAttribute('data-probe', JSON.stringify({
    quarantine_bg: q ? getComputedStyle(q).backgroundColor : null,
    table_collapse: t ? getComputedStyle(t).borderCollapse : null,
    links: links.length, loaded: links.filter(l => l.sheet !== null).length,
    body_margin: getComputedStyle(document.body).marginTop}));
});
</script>"""


@pytest.fixture(scope="module")
def data_docs(page: tuple[Path, Status]) -> Path:
    """The page home's Data Docs, built for the datasets that have batches (fewer suites: faster)."""
    from quality.docs import build_data_docs

    home = page[0].parent.parent.parent
    datasets = {b.dataset for b in collect(home).batches}  # now: earlier tests may have landed more
    return build_data_docs(home, [c for c in context.contracts() if c.name in datasets], "2026-12-01").parent


def test_data_docs_reference_nothing_outside_the_site(data_docs: Path) -> None:
    from quality.docs_site import external_references

    files = [p for p in data_docs.rglob("*") if p.suffix in {".html", ".css", ".js"}]
    assert any(p.name == "index.html" for p in files) and len(files) > 5
    found = {str(p.relative_to(data_docs)): external_references(p.read_text("utf-8")) for p in files}
    assert {k: v for k, v in found.items() if v} == {}
    for page in (p for p in files if p.suffix == ".html"):  # every local reference resolves inside the site
        text = page.read_text("utf-8")
        for ref in re.findall(r'(?:src|href)="([^"#?]+)', text):
            target = (page.parent / ref).resolve()
            assert target.is_relative_to(data_docs.resolve()) and target.exists(), (page.name, ref)


def test_data_docs_show_each_batch_quarantine_beside_its_validation(data_docs: Path,
                                                                   page: tuple[Path, Status]) -> None:
    status = page[1]
    held = [b for b in status.batches if b.quarantined]
    assert held
    for b in held:
        pages = list((data_docs / "validations" / b.dataset).glob(f"*/{b.batch_id[:16]}/*/*.html"))
        assert len(pages) == 2, pages  # the rows suite and the batch suite
        for p in pages:
            text = p.read_text("utf-8")
            assert 'id="civicnet-quarantine"' in text and f"{b.quarantined:,}" in text
            by_reason = status.quarantine[b.dataset]
            codes = {c for q in by_reason.values() for c in q.by_reason}
            assert codes and all(f"<code>{c}</code>" in text for c in codes)
    index = (data_docs / "index.html").read_text("utf-8")
    assert all(b.batch_id[:16] in index for b in status.batches)
    assert "隔离" in index  # zh-CN by default


def test_data_docs_render_styled_offline(chromium: str, data_docs: Path, tmp_path: Path) -> None:
    held = next(p for p in sorted((data_docs / "validations").rglob("*.html"))
                if 'class="cn-quarantine cn-held"' in p.read_text("utf-8"))
    for target in (held, data_docs / "index.html"):
        probe = target.with_name(f"probe-{target.name}")
        probe.write_text(target.read_text("utf-8").replace("</body>", _PROBE + "</body>"), "utf-8")
        try:
            done = run_chromium(chromium, tmp_path / f"profile-{target.stem}", *OFFLINE, "--dump-dom",
                                probe.as_uri())
        finally:
            probe.unlink()
        assert "ERR_NAME_NOT_RESOLVED" not in done.stderr and "Failed to load resource" not in done.stderr
        found = re.search(r'data-probe="([^"]+)"', done.stdout)
        assert found, done.stdout[-500:]
        seen = json.loads(found.group(1).replace("&quot;", '"'))
        assert seen["links"] >= 1 and seen["loaded"] == seen["links"], seen  # civicnet's stylesheet, loaded
        # rules only civicnet's stylesheet has: the quarantine highlighted, Bootstrap-like tables and body
        assert seen["quarantine_bg"] == "rgb(255, 241, 214)", seen
        assert seen["table_collapse"] == "collapse" and seen["body_margin"] == "0px", seen


def test_page_is_chinese_by_default_with_shanghai_times(page: tuple[Path, Status]) -> None:
    home = page[0].parent.parent.parent
    zh = quality_page(home, "it-run-zh").read_text("utf-8")
    assert '<html lang="zh-CN">' in zh and "数据质量报告" in zh and "(UTC+8)" in zh
    assert "(UTC)" not in zh and " ago" not in zh
