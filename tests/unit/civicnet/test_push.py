"""`civicnet push`: the local check refuses what cannot be sent, and a real upload to a gateway on
loopback (inline trigger, merge at the city only) comes back with its rejection report."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from tqdm import tqdm

from civicnet.cli import main, parser
from civicnet.context import registry
from civicnet.demo.workbooks import expenditure_rows, write_expenditure_files
from civicnet.gateway.app import GatewayServer
from civicnet.gateway.trigger import InlineTrigger
from civicnet.pipeline import push as push_module
from civicnet.pipeline.push import push
from connectors.push.client import CHUNK, UploadBody
from connectors.push.senders import add_sender, authenticate

AS_OF = dt.date(2021, 6, 30)
DATASET = "community_expenditures"
COMMUNITY = registry().by_tier("community")[0].code
HEADER = ["支出编号", "社区代码", "年度", "季度", "支出类别", "金额", "说明"]


@dataclass
class Gateway:
    url: str
    home: Path
    trigger: InlineTrigger
    tokens: dict[str, str]

    def landed(self) -> int:
        folder = self.home / "landing" / DATASET
        return sum(1 for p in folder.iterdir() if not p.name.startswith(("_", "."))) if folder.exists() else 0


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("push")
    tokens = {"ca": add_sender(home, "ca", "department", "civil_affairs"),
              "station": add_sender(home, "station", "community", None, COMMUNITY)}
    trigger = InlineTrigger(home, AS_OF, sync=False)
    with GatewayServer(home, trigger) as server:
        yield Gateway(server.url, home, trigger, tokens)


def run_push(gateway: Gateway, path: Path, token: str | None, report: bool = False,
             wait: float = 120, lang: str = "en") -> tuple[int, str, str]:
    """One push; English unless asked (the assertions read English words; zh-CN, the default, has its test)."""
    out, err = io.StringIO(), io.StringIO()
    code = push(gateway.url, token, DATASET, path, report, wait, out, err, AS_OF, lang)
    return code, out.getvalue(), err.getvalue()


def write_csv(path: Path, rows: list[tuple[object, ...]], header: list[str] = HEADER) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def receipt_of(stdout: str) -> dict[str, Any]:
    receipt, _ = json.JSONDecoder().raw_decode(stdout)
    assert isinstance(receipt, dict)
    return receipt


def test_wrong_columns_are_refused_before_sending(gateway: Gateway, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "wrong.csv", [("E1", COMMUNITY, 2021)], header=["编号", "社区", "年"])
    before = gateway.landed()

    code, out, err = run_push(gateway, path, gateway.tokens["ca"])

    assert (code, out) == (2, "")
    assert "not sent" in err and "missing" in err and "支出编号" in err
    assert gateway.landed() == before


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("report.pdf", b"%PDF-1.4", "extension '.pdf'"),
    ("report.xlsx", b"not a workbook", "not a readable XLSX"),
    ("missing.csv", None, "cannot read"),
], ids=["unknown-extension", "unreadable", "missing-file"])
def test_unreadable_files_are_refused_before_sending(gateway: Gateway, tmp_path: Path, name: str,
                                                     content: bytes | None, expected: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)

    code, _, err = run_push(gateway, path, gateway.tokens["ca"])

    assert code == 2
    assert expected in err


def test_no_token_is_refused_before_sending(gateway: Gateway, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "e.csv", list(expenditure_rows(COMMUNITY, random.Random(3))))
    code, _, err = run_push(gateway, path, None)
    assert code == 2 and "CIVICNET_TOKEN" in err


def test_gateway_refusal_exits_3_with_its_error(gateway: Gateway, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "e.csv", list(expenditure_rows(COMMUNITY, random.Random(4))))
    before = gateway.landed()

    code, out, err = run_push(gateway, path, "not-a-token")

    assert (code, out) == (3, "")
    assert "HTTP 401" in err and "token is not valid" in err
    assert gateway.landed() == before


def test_community_upload_with_report(gateway: Gateway, tmp_path: Path) -> None:
    """A station's workbook with one row of another community: applied, that row reported by line."""
    files = write_expenditure_files(tmp_path, registry(), [COMMUNITY], seed=5)

    code, out, err = run_push(gateway, files[COMMUNITY], gateway.tokens["station"], report=True)

    assert code == 0, err
    receipt = receipt_of(out)
    assert (receipt["dataset"], receipt["sender"], receipt["file"]) == (DATASET, "station", "expenditures-2021Q2.xlsx")
    report = out[out.index("}\n") + 2:]
    assert f"batch {receipt['batch_id']} (expenditures-2021Q2.xlsx): applied" in report
    rows = receipt["rows"]
    assert f"received {rows}, applied {rows - 1}, quarantined 1, duplicates 0, held 0" in report
    assert f"line {rows}: outside_jurisdiction (division_code)" in report
    assert "quarantined by reason: outside_jurisdiction (division_code) 1" in report  # the gateway's report
    assert "what to do:" in report and "releases the rows from quarantine" in report


def test_local_check_previews_quarantine_and_still_sends(gateway: Gateway, tmp_path: Path) -> None:
    rows: list[tuple[object, ...]] = list(expenditure_rows(COMMUNITY, random.Random(6)))
    rows[2] = (*rows[2][:4], "旅游", *rows[2][5:])  # not a category of the contract
    path = write_csv(tmp_path / "expenditures.csv", rows)

    code, out, err = run_push(gateway, path, gateway.tokens["ca"], report=True)

    assert code == 0, err
    assert "not_in_code_list 1" in err and "line 3: not_in_code_list (category)" in err
    assert "quarantined 1" in out and "line 3: not_in_code_list (category)" in out


def test_no_verdict_in_time_exits_4(gateway: Gateway, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "late.csv", list(expenditure_rows(COMMUNITY, random.Random(7))))
    with gateway.trigger.node_lock:  # a run holds the city node: the batch cannot be decided
        code, out, err = run_push(gateway, path, gateway.tokens["ca"], report=True, wait=0.5)
    assert gateway.trigger.wait_idle(120)

    assert code == 4
    assert ": processing" in out and "no verdict within 0.5 s" in err


def test_body_streams_in_chunks_and_declares_its_length(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"x" * (2 * CHUNK + 5))
    with tqdm(total=path.stat().st_size, file=io.StringIO()) as bar:
        body = UploadBody(path, bar)
        chunks = list(body)

        assert len(body) == 2 * CHUNK + 5
        assert [len(c) for c in chunks] == [CHUNK, CHUNK, 5]
        assert bar.n == len(body)


def test_cli_prefers_the_token_from_the_environment(gateway: Gateway, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(tmp_path / "env.csv", list(expenditure_rows(COMMUNITY, random.Random(8))))
    monkeypatch.setenv("CIVICNET_TOKEN", gateway.tokens["ca"])

    code = main(["push", "--dataset", DATASET, "--file", str(path), "--gateway", gateway.url, "--token", "stale"])

    assert code == 0, capsys.readouterr().err
    assert receipt_of(capsys.readouterr().out)["sender"] == "ca"
    assert gateway.trigger.wait_idle(120)


def test_cli_add_sender_prints_the_token_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--home", str(tmp_path)]) == 0  # senders are added to an existing home
    capsys.readouterr()
    assert main(["gateway", "add-sender", "--home", str(tmp_path), "--id", "station", "--kind", "community",
                 "--division", COMMUNITY]) == 0
    added = capsys.readouterr().out
    token = added.strip().splitlines()[-1]
    assert "not store" in added and len(token) >= 43

    assert main(["gateway", "senders", "--home", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert listed == f"station\tcommunity\tcommunity:{COMMUNITY}\t{COMMUNITY}\n"
    assert token not in (tmp_path / "gateway" / "senders.json").read_text("utf-8")

    assert main(["gateway", "revoke-sender", "--home", str(tmp_path), "--id", "station"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert authenticate(tmp_path, token) is None
    assert main(["gateway", "senders", "--home", str(tmp_path)]) == 0
    assert capsys.readouterr().out == ""


def test_cli_add_sender_refuses_a_street_as_community(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    street = registry().by_tier("street")[0].code
    assert main(["init", "--home", str(tmp_path)]) == 0
    code = main(["gateway", "add-sender", "--home", str(tmp_path), "--id", "s", "--kind", "community",
                 "--division", street])
    assert code == 2 and "community code" in capsys.readouterr().err


def test_cli_parses_gateway_serve() -> None:
    args = parser().parse_args(["gateway", "serve", "--trigger", "inline", "--port", "9000"])
    assert (args.command, args.gateway_command, args.trigger, args.host, args.port) == \
        ("gateway", "serve", "inline", "127.0.0.1", 9000)


def test_report_falls_back_to_the_status_when_it_cannot_be_read(gateway: Gateway, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*_: object) -> str:
        raise requests.ConnectionError("connection reset")

    monkeypatch.setattr(push_module, "fetch_report", unreachable)
    path = write_csv(tmp_path / "fallback.csv", list(expenditure_rows(COMMUNITY, random.Random(9))))

    code, out, err = run_push(gateway, path, gateway.tokens["ca"], report=True)

    assert code == 0, err
    assert "report could not be read (connection reset)" in err
    assert ": applied" in out and "what to do:" not in out


def test_the_push_client_speaks_chinese_by_default(gateway: Gateway, tmp_path: Path) -> None:
    rows: list[tuple[object, ...]] = list(expenditure_rows(COMMUNITY, random.Random(11)))
    rows[1] = (*rows[1][:4], "旅游", *rows[1][5:])  # not a category of the contract
    path = write_csv(tmp_path / "expenditures-zh.csv", rows)
    out, err = io.StringIO(), io.StringIO()

    code = push(gateway.url, gateway.tokens["ca"], DATASET, path, True, 120, out, err, AS_OF)

    assert code == 0, err.getvalue()
    assert f"读取 {len(rows)} 行" in err.getvalue() and "not_in_code_list 1" in err.getvalue()
    assert "rows read" not in err.getvalue()
    code, _, no_token = run_push(gateway, path, None, lang="zh-CN")
    assert code == 2 and "没有令牌" in no_token and "CIVICNET_TOKEN" in no_token


def test_cli_push_takes_a_language() -> None:
    args = parser().parse_args(["push", "--dataset", DATASET, "--file", "x.csv", "--lang", "en"])
    assert args.lang == "en"
    assert parser().parse_args(["push", "--dataset", DATASET, "--file", "x.csv"]).lang in {"zh-CN", "en"}
    assert parser().parse_args(["report"]).lang == "zh-CN"  # the quality page: zh-CN unless asked
    assert parser().parse_args(["report", "--lang", "en"]).lang == "en"
