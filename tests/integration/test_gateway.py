"""The push gateway over real HTTP on loopback, on a tiny built home, with the inline trigger.

Two pushes are made once for the module (a civil-affairs department file, and a community's
file with one row of a community in another district) and processed in one ingest + sync run;
the tests then read the answers, the node files and the landing folder (the home is a copy of the
session's round-one home). Every refusal is also checked to land nothing. The report tests that
push batches of their own read only their decision: their runs stop after the city node's merge."""

from __future__ import annotations

import csv
import hashlib
import io
import random
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import requests
from conftest import AS_OF

from civicnet.demo.workbooks import expenditure_id, expenditure_rows
from civicnet.gateway.app import GatewayServer
from civicnet.gateway.trigger import InlineTrigger
from connectors.push.senders import add_sender
from schemas.csvsafe import is_formula
from schemas.divisions import load_registry
from schemas.media import CSV
from warehouse.stores import node_path

pytestmark = pytest.mark.slow  # builds a home and syncs the whole network

DATASET = "community_expenditures"
REGISTRY = load_registry(2020)
_DISTRICTS = REGISTRY.by_tier("district")
_COMMUNITIES = [d.code for d in REGISTRY.by_tier("community")]
SENDER_COMMUNITY = next(c for c in _COMMUNITIES if c.startswith(_DISTRICTS[0].code[:6]))  # a station that pushes
FOREIGN = next(c for c in _COMMUNITIES if c.startswith(_DISTRICTS[1].code[:6]))  # another district's community
DEPARTMENT_COMMUNITY = next(c for c in _COMMUNITIES if c.startswith(_DISTRICTS[2].code[:6]))  # civil affairs' rows
HEADER = ["支出编号", "社区代码", "年度", "季度", "支出类别", "金额", "说明"]


def csv_bytes(rows: list[tuple[object, ...]], header: list[str] = HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def expenditures(code: str, seed: int) -> list[tuple[object, ...]]:
    return list(expenditure_rows(code, random.Random(seed)))


@dataclass
class Gateway:
    """A running gateway and what the module pushed to it."""

    url: str
    home: Path
    trigger: InlineTrigger
    tokens: dict[str, str]
    receipts: dict[str, dict[str, Any]]
    status_while_busy: dict[str, Any]

    def post(self, token: str | None, body: bytes, name: str = "expenditures.csv", dataset: str = DATASET,
             media_type: str = CSV, extra: dict[str, str] | None = None) -> requests.Response:
        headers = {"Content-Type": media_type, "X-Filename": name, **(extra or {})}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.post(f"{self.url}/v1/datasets/{dataset}/batches", data=body, headers=headers, timeout=60)

    def status(self, token: str, batch_id: str) -> requests.Response:
        return requests.get(f"{self.url}/v1/batches/{batch_id}", headers={"Authorization": f"Bearer {token}"},
                            timeout=60)

    def landed(self) -> list[str]:
        folder = self.home / "landing" / DATASET
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith(("_", "."))) if folder.exists() else []


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, home_copy: Callable[[Path], Path]) -> Iterator[Gateway]:
    home = home_copy(tmp_path_factory.mktemp("gateway"))
    tokens = {"ca": add_sender(home, "ca", "department", "civil_affairs"),
              "ca2": add_sender(home, "ca2", "department", "civil_affairs"),
              "ps": add_sender(home, "ps", "department", "public_security"),
              "station": add_sender(home, "station", "community", None, SENDER_COMMUNITY)}
    trigger = InlineTrigger(home, AS_OF)
    server = GatewayServer(home, trigger).start()
    gw = Gateway(server.url, home, trigger, tokens, {}, {})
    station_rows = [*expenditures(SENDER_COMMUNITY, 1),
                    (expenditure_id(FOREIGN, 999), FOREIGN, 2021, 2, "活动", 5000, "其他社区的行")]
    # hold the node as a running merge would: both pushes join the one run that starts after
    with trigger.node_lock:
        for who, rows in (("ca", expenditures(DEPARTMENT_COMMUNITY, 2)), ("station", station_rows)):
            answer = gw.post(tokens[who], csv_bytes(rows))
            assert answer.status_code == 202, answer.text
            gw.receipts[who] = answer.json()
        gw.status_while_busy.update(gw.status(tokens["ca"], gw.receipts["ca"]["batch_id"]).json())
    assert trigger.wait_idle(600)
    yield gw
    server.stop()


@pytest.fixture
def merge_only(gateway: Gateway) -> Iterator[None]:
    """For one test: the trigger's runs stop after the merge at the city node (no network sync), for
    tests that read only a batch's decision (its status and report), not the nodes below the city."""
    gateway.trigger.sync_network = False
    try:
        yield
    finally:
        gateway.trigger.sync_network = True


def rows_holding(home: Path, expenditure: str) -> dict[str, int]:
    """Every node file (and the city's history) that holds this expenditure id: file stem → rows."""
    con = duckdb.connect()
    found = {}
    try:
        for path in sorted((home / "nodes").glob("*/*.duckdb")):
            if path.name.startswith("."):
                continue
            con.execute(f"ATTACH '{path}' AS n (READ_ONLY)")
            tables = ["community_expenditures"] + (["community_expenditures_history"] if "city" in path.parts else [])
            n = sum(con.execute(f"SELECT count(*) FROM n.{t} WHERE expenditure_id = ?", [expenditure]).fetchall()[0][0]
                    for t in tables)
            con.execute("DETACH n")
            if n:
                found[path.stem] = n
    finally:
        con.close()
    return found


def node_ids(home: Path, code: str) -> set[str]:
    with duckdb.connect(str(node_path(home, code)), read_only=True) as con:
        return {r[0] for r in con.execute("SELECT expenditure_id FROM community_expenditures").fetchall()}


def test_health_needs_no_token(gateway: Gateway) -> None:
    answer = requests.get(f"{gateway.url}/v1/health", timeout=10)
    assert (answer.status_code, answer.json()) == (200, {"ok": True})


@pytest.mark.parametrize("token", [None, "not-a-token", ""], ids=["missing", "wrong", "empty"])
def test_without_a_valid_token_401(gateway: Gateway, token: str | None) -> None:
    before = gateway.landed()
    answer = gateway.post(token, csv_bytes(expenditures(DEPARTMENT_COMMUNITY, 50)))

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert "token" in answer.json()["error"]
    assert gateway.landed() == before


def test_status_needs_a_valid_token(gateway: Gateway) -> None:
    answer = gateway.status("not-a-token", gateway.receipts["ca"]["batch_id"])
    assert answer.status_code == 401


def test_department_cannot_write_another_departments_dataset(gateway: Gateway) -> None:
    before = gateway.landed()
    answer = gateway.post(gateway.tokens["ps"], csv_bytes(expenditures(DEPARTMENT_COMMUNITY, 51)))

    assert answer.status_code == 403
    assert "civil_affairs" in answer.json()["error"]
    assert gateway.landed() == before


def test_happy_path_reaches_city_and_community(gateway: Gateway) -> None:
    receipt = gateway.receipts["ca"]
    status = gateway.status(gateway.tokens["ca"], receipt["batch_id"]).json()
    sent = {str(r[0]) for r in expenditures(DEPARTMENT_COMMUNITY, 2)}

    assert status["status"] == "applied"
    c = status["counts"]
    assert c["received"] == receipt["rows"] == len(sent)
    assert c["received"] == c["applied"] + c["quarantined"] + c["duplicates"]
    assert (c["applied"], c["quarantined"], status["quarantined_rows"]) == (len(sent), 0, [])
    assert node_ids(gateway.home, REGISTRY.root().code) >= sent
    assert node_ids(gateway.home, DEPARTMENT_COMMUNITY) == sent


def test_status_while_a_run_holds_the_node_is_processing(gateway: Gateway) -> None:
    assert gateway.status_while_busy["status"] == "processing"
    assert gateway.status_while_busy["counts"]["received"] == gateway.receipts["ca"]["rows"]


def test_community_rows_of_another_community_are_quarantined(gateway: Gateway) -> None:
    receipt = gateway.receipts["station"]
    status = gateway.status(gateway.tokens["station"], receipt["batch_id"]).json()
    foreign = expenditure_id(FOREIGN, 999)

    assert status["status"] == "applied"
    (row,) = status["quarantined_rows"]
    assert [r["code"] for r in row["reasons"]] == ["outside_jurisdiction"]
    assert (row["line"], row["raw"]["支出编号"]) == (receipt["rows"], foreign)
    c = status["counts"]
    assert (c["received"], c["applied"], c["quarantined"]) == (receipt["rows"], receipt["rows"] - 1, 1)
    assert rows_holding(gateway.home, foreign) == {}
    assert node_ids(gateway.home, SENDER_COMMUNITY) == {str(r[0]) for r in expenditures(SENDER_COMMUNITY, 1)}


def test_quarantine_at_the_city_names_the_reason(gateway: Gateway) -> None:
    path = node_path(gateway.home, REGISTRY.root().code)
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute("""SELECT department, list_transform(reasons, lambda r: r.code), raw->>'$.支出编号'
                              FROM _civicnet.quarantine WHERE batch_id = ?""",
                           [gateway.receipts["station"]["batch_id"]]).fetchall()
    assert rows == [(f"community:{SENDER_COMMUNITY}", ["outside_jurisdiction"], expenditure_id(FOREIGN, 999))]


def _read_answer(sock: socket.socket) -> str:
    """The whole answer: its head, then as many body bytes as its Content-Length says (a busy
    machine may deliver them in another segment than the head)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data.decode("utf-8", "replace")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return (head + b"\r\n\r\n" + body).decode("utf-8", "replace")


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "chunked"])
def test_oversized_body_413(gateway: Gateway, declare_length: bool) -> None:
    """16 MiB + 1 byte: refused by the declared length before reading, or while counting a chunked body."""
    before = gateway.landed()
    size = (16 << 20) + 1
    with socket.create_connection(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1])), timeout=60) as sock:
        framing = f"Content-Length: {size}" if declare_length else "Transfer-Encoding: chunked"
        sock.sendall((f"POST /v1/datasets/{DATASET}/batches HTTP/1.1\r\nHost: gw\r\nContent-Type: text/csv\r\n"
                      f"Authorization: Bearer {gateway.tokens['ca']}\r\nX-Filename: big.csv\r\n{framing}\r\n\r\n")
                     .encode())
        if not declare_length:  # send it all (the gateway may stop reading once past the limit)
            try:
                for _ in range(16):
                    sock.sendall(b"100000\r\n" + b"a" * (1 << 20) + b"\r\n")
                sock.sendall(b"1\r\na\r\n0\r\n\r\n")
            except OSError:
                pass
        head = _read_answer(sock)
    assert head.startswith("HTTP/1.1 413"), head[:200]
    assert "16777216 bytes" in head
    assert gateway.landed() == before


@pytest.mark.parametrize("name", ["../x.csv", "a/b.csv", "..\\x.csv", "%2e%2e%2fx.csv", "x%01.csv", "x" * 201],
                         ids=["dotdot", "slash", "backslash", "percent-encoded", "control", "too-long"])
def test_file_name_must_be_plain(gateway: Gateway, name: str) -> None:
    before = gateway.landed()
    answer = gateway.post(gateway.tokens["ca"], csv_bytes(expenditures(DEPARTMENT_COMMUNITY, 52)), name=name)

    assert answer.status_code == 422
    assert "must be a plain name" in answer.json()["error"]
    assert gateway.landed() == before


def test_replay_returns_the_first_receipt_and_lands_nothing(gateway: Gateway) -> None:
    before, runs = gateway.landed(), gateway.trigger.runs
    answer = gateway.post(gateway.tokens["ca"], csv_bytes(expenditures(DEPARTMENT_COMMUNITY, 2)), name="again.csv")

    assert answer.status_code == 200
    assert answer.json() == gateway.receipts["ca"] | {"replayed": True}
    assert gateway.trigger.wait_idle(60)
    assert (gateway.landed(), gateway.trigger.runs) == (before, runs)


def test_replay_by_a_sender_who_may_not_see_the_batch_reveals_nothing(gateway: Gateway) -> None:
    station_body = csv_bytes(expenditures(DEPARTMENT_COMMUNITY, 2))  # civil affairs' file, sent by a station
    answer = gateway.post(gateway.tokens["station"], station_body)

    assert answer.status_code == 409
    assert answer.json().keys() == {"error"}
    assert gateway.receipts["ca"]["batch_id"] not in answer.text


def test_unknown_dataset_422(gateway: Gateway) -> None:
    answer = gateway.post(gateway.tokens["ca"], csv_bytes(expenditures(DEPARTMENT_COMMUNITY, 53)), dataset="budgets")

    assert answer.status_code == 422
    assert "budgets" in answer.json()["error"] and DATASET in answer.json()["error"]


@pytest.mark.parametrize(("body", "media_type", "expected"), [
    (bytes(range(256)) * 4, CSV, "neither UTF-8 nor GB18030"),
    (b"PK\x03\x04 not really a workbook", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
     "not a readable XLSX"),
    (b"a,b\n1,2\n", "application/pdf", "Content-Type 'application/pdf'"),
    (csv_bytes([(1, 2)], header=["编号", "金额"]), CSV, "missing"),
    (csv_bytes([]), CSV, "no data rows"),
], ids=["garbage-csv", "garbage-xlsx", "unknown-media-type", "wrong-columns", "header-only"])
def test_malformed_payload_422(gateway: Gateway, body: bytes, media_type: str, expected: str) -> None:
    before = gateway.landed()
    answer = gateway.post(gateway.tokens["ca"], body, media_type=media_type)

    assert answer.status_code == 422
    assert expected in answer.json()["error"]
    assert gateway.landed() == before


def test_batch_is_visible_to_its_department_only(gateway: Gateway) -> None:
    batch_id = gateway.receipts["ca"]["batch_id"]

    assert gateway.status(gateway.tokens["ca2"], batch_id).status_code == 200
    for other in ("ps", "station"):
        answer = gateway.status(gateway.tokens[other], batch_id)
        assert answer.status_code == 404
        assert answer.json().keys() == {"error"}
    assert gateway.status(gateway.tokens["ca"], "0" * 64).status_code == 404


def test_a_batch_that_cannot_be_conformed_is_refused_and_its_status_says_why(tmp_path: Path) -> None:
    """A batch landed past the gateway's checks (wrong columns) is refused by its ingest run: the
    worker survives, the batch stays in landing, and its status carries the reason."""
    from civicnet.pipeline.batches import batch_status
    from connectors.parse import read_payload
    from warehouse import landing

    body = csv_bytes([(1, 2)], header=["编号", "金额"])
    batch_id = hashlib.sha256(body).hexdigest()
    manifest = landing.Manifest(batch_id, DATASET, "civil_affairs", DATASET, "bad.csv", CSV, "utf-8", len(body), 1,
                                landing.utc_now(), {}, sender="ca")
    landing.land(tmp_path, manifest, body, read_payload(body, CSV, "utf-8", "bad.csv"))
    trigger = InlineTrigger(tmp_path, AS_OF, sync=False)

    trigger(DATASET, batch_id)
    assert trigger.wait_idle(120)

    assert trigger.runs == 1
    assert trigger.last_error(batch_id) is None  # the run itself succeeded: it recorded a refusal
    receipt = {"batch_id": batch_id, "dataset": DATASET, "rows": 1}
    status = batch_status(tmp_path, receipt, trigger)
    assert status["status"] == "refused"
    assert "missing" in status["error"] and "支出编号" in status["error"]
    assert status["gate"] == "fail"


def get_report(gateway: Gateway, token: str, batch_id: str, fmt: str | None = None,
               lang: str | None = "en") -> requests.Response:
    """A report; English unless asked (the assertions read its English words; zh-CN, the default, has its test)."""
    params = ({"format": fmt} if fmt else {}) | ({"lang": lang} if lang else {})
    return requests.get(f"{gateway.url}/v1/batches/{batch_id}/report", params=params,
                        headers={"Authorization": f"Bearer {token}"}, timeout=60)


def test_report_names_the_quarantined_row_for_its_sender(gateway: Gateway) -> None:
    receipt = gateway.receipts["station"]
    status = gateway.status(gateway.tokens["station"], receipt["batch_id"]).json()

    answer = get_report(gateway, gateway.tokens["station"], receipt["batch_id"])

    assert status["report"] == f"/v1/batches/{receipt['batch_id']}/report"
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    report = answer.json()
    assert (report["status"], report["sender"], report["source_name"], report["needs_return"]) == \
        ("applied", "station", "expenditures.csv", True)
    assert report["counts"] == {"received": receipt["rows"], "applied": receipt["rows"] - 1, "quarantined": 1,
                                "duplicates": 0, "held": 0}
    assert report["balanced"] and report["refusal"] == []
    (row,) = report["rows"]
    foreign = expenditure_id(FOREIGN, 999)
    assert (row["line"], row["key"], row["raw"]["支出编号"]) == (receipt["rows"], foreign, foreign)
    assert [(r["code"], r["field"], r["value"]) for r in row["reasons"]] == \
        [("outside_jurisdiction", "division_code", FOREIGN)]


def test_report_as_csv_opens_in_excel_and_as_text(gateway: Gateway) -> None:
    receipt = gateway.receipts["station"]

    as_csv = get_report(gateway, gateway.tokens["station"], receipt["batch_id"], "csv")
    as_text = get_report(gateway, gateway.tokens["station"], receipt["batch_id"], "text")

    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.content.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    assert lines[0][:6] == ["line", "key", "field", "code", "message", "value"]
    assert [[*line[:4], line[5]] for line in lines[1:]] == \
        [[str(receipt["rows"]), expenditure_id(FOREIGN, 999), "division_code", "outside_jurisdiction", FOREIGN]]
    assert as_text.status_code == 200
    assert f"line {receipt['rows']}: outside_jurisdiction (division_code)" in as_text.text
    assert "what to do:" in as_text.text


def test_report_needs_a_valid_token_and_is_hidden_from_other_senders(gateway: Gateway) -> None:
    batch_id = gateway.receipts["station"]["batch_id"]

    assert get_report(gateway, "not-a-token", batch_id).status_code == 401
    for other in ("ca", "ps"):
        answer = get_report(gateway, gateway.tokens[other], batch_id)
        assert answer.status_code == 404
        assert answer.json().keys() == {"error"} and "no batch" in answer.json()["error"]
    assert get_report(gateway, gateway.tokens["station"], "0" * 64).status_code == 404
    assert get_report(gateway, gateway.tokens["station"], batch_id, "pdf").status_code == 422


@pytest.mark.usefixtures("merge_only")
def test_report_exists_only_once_the_batch_is_decided(gateway: Gateway) -> None:
    # rows of a community no other test reads, so the node checks above are unaffected
    community = next(c for c in _COMMUNITIES if c.startswith(_DISTRICTS[3].code[:6]))
    with gateway.trigger.node_lock:  # a run holds the city node: the batch cannot be decided yet
        answer = gateway.post(gateway.tokens["ca"], csv_bytes(expenditures(community, 60)))
        batch_id = answer.json()["batch_id"]
        early = get_report(gateway, gateway.tokens["ca"], batch_id)
        status = gateway.status(gateway.tokens["ca"], batch_id).json()
    assert gateway.trigger.wait_idle(600)

    assert early.status_code == 404 and "applied or refused" in early.json()["error"]
    assert "report" not in status
    late = get_report(gateway, gateway.tokens["ca2"], batch_id)  # the same department may read it
    assert late.status_code == 200
    assert (late.json()["status"], late.json()["needs_return"], late.json()["rows"]) == ("applied", False, [])
    assert gateway.status(gateway.tokens["ca"], batch_id).json()["report"] == f"/v1/batches/{batch_id}/report"


@pytest.mark.usefixtures("merge_only")
def test_report_as_csv_has_no_cell_a_spreadsheet_would_run(gateway: Gateway) -> None:
    """A sender's hostile values come back in the CSV report quoted; a plain negative amount stays a number."""
    rows = expenditures(SENDER_COMMUNITY, 70)
    hostile = ["-2+3+cmd|' /C calc'!A0", "+1+1", "@SUM(A1)", "＝1+1"]
    rows[0] = (*rows[0][:5], -5, rows[0][6])  # out of range, a plain number
    for i, bad in enumerate(hostile, start=1):  # not a number / a note too long, starting with a formula
        rows[i] = (*rows[i][:5], bad if i % 2 else rows[i][5], rows[i][6] if i % 2 else bad + "x" * 200)
    answer = gateway.post(gateway.tokens["station"], csv_bytes(rows), name="hostile.csv")
    assert answer.status_code == 202, answer.text
    assert gateway.trigger.wait_idle(600)

    as_csv = get_report(gateway, gateway.tokens["station"], answer.json()["batch_id"], "csv")

    lines = list(csv.reader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    values = [line[5] for line in lines[1:]]
    assert "-5" in values and {"'" + bad for bad in hostile[::2]} <= set(values)
    assert {"'" + bad + "x" * 200 for bad in hostile[1::2]} <= set(values)
    assert [cell for line in lines for cell in line if is_formula(cell)] == ["-5"]


def test_report_is_chinese_by_default_and_follows_accept_language(gateway: Gateway) -> None:
    receipt = gateway.receipts["station"]
    token = gateway.tokens["station"]
    default = get_report(gateway, token, receipt["batch_id"], "text", lang=None)
    assert default.status_code == 200 and "处理办法：" in default.text and "what to do:" not in default.text
    english = requests.get(f"{gateway.url}/v1/batches/{receipt['batch_id']}/report", params={"format": "text"},
                           headers={"Authorization": f"Bearer {token}", "Accept-Language": "en-US,en;q=0.8"},
                           timeout=60)
    assert english.status_code == 200 and "what to do:" in english.text
    as_json = get_report(gateway, token, receipt["batch_id"], lang="zh-CN").json()
    assert as_json["lang"] == "zh_CN" and as_json["rows"][0]["reasons"][0]["code"] == "outside_jurisdiction"
    assert "辖区" in as_json["rows"][0]["reasons"][0]["message"]
    assert get_report(gateway, token, receipt["batch_id"], lang="fr").status_code == 422
