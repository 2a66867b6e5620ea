"""The push client's HTTP calls to the gateway: send a file, poll its status, read its report.

A session sends the sender's token and retries dropped connections (RETRY); an upload streams the
file in 1 MiB pieces with a known length and a progress bar on stderr. `civicnet push`
(civicnet/pipeline/push.py) composes these with the local check and the rendering for people.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

from schemas.i18n import DEFAULT_LANG

CHUNK = 1 << 20  # upload in 1 MiB pieces; a progress bar above this size
FINAL = ("applied", "refused")  # the states of a decided batch
TIMEOUT = (10.0, 300.0)  # seconds to connect, to wait for an answer
# A connection the gateway dropped (its keep-alive ran out while we waited between polls, a restart)
# is retried on a fresh one: the polls are GETs, and the POST of a batch is idempotent too (the batch id
# is the content hash; a resent body lands nothing and answers with the first receipt). Only connection
# errors are retried, never an answer: a refusal is the gateway's word.
RETRY = Retry(total=4, connect=4, read=4, status=0, other=0, redirect=0, backoff_factor=0.1,
              allowed_methods=frozenset({"GET", "HEAD", "POST"}), raise_on_status=False)


class UploadBody:
    """The file as an upload body: 1 MiB pieces read as they are sent, with a known length (so the
    gateway can refuse an oversized file before it arrives) and a progress bar on stderr."""

    def __init__(self, path: Path, bar: tqdm[Any]) -> None:
        self.path, self.bar = path, bar

    def __len__(self) -> int:
        return self.path.stat().st_size

    def __iter__(self) -> Iterator[bytes]:
        with self.path.open("rb") as f:
            while chunk := f.read(CHUNK):
                self.bar.update(len(chunk))
                yield chunk


def gateway_session(token: str) -> requests.Session:
    """A session that sends the token and retries requests on dropped connections (RETRY)."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    adapter = HTTPAdapter(max_retries=RETRY)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@contextmanager
def _or_new(session: requests.Session | None, token: str) -> Iterator[requests.Session]:
    """The caller's session (left open), else a new one, closed after use."""
    if session is not None:
        yield session
        return
    with gateway_session(token) as own:
        yield own


def send_file(gateway: str, token: str, dataset: str, path: Path, media_type: str,
              session: requests.Session | None = None) -> requests.Response:
    """POST the file to the gateway, streaming it (again from the start if the connection drops)."""
    size = path.stat().st_size
    headers = {"Content-Type": media_type, "X-Filename": quote(path.name, safe="")}
    with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=path.name,
              disable=size <= CHUNK, leave=False) as bar, _or_new(session, token) as http:
        return http.post(f"{gateway.rstrip('/')}/v1/datasets/{quote(dataset, safe='')}/batches",
                         data=UploadBody(path, bar), headers=headers, timeout=TIMEOUT)


def wait_for_verdict(gateway: str, token: str, status_url: str, wait: float,
                     session: requests.Session | None = None) -> dict[str, Any]:
    """Poll a batch's status until it is applied or refused, or `wait` seconds pass (the last status).
    The pause between polls grows to 5 s, longer than many servers keep an idle connection: a
    dropped connection is retried (RETRY), not reported."""
    deadline, pause = time.monotonic() + wait, 0.5
    with _or_new(session, token) as http:
        while True:
            answer = http.get(gateway.rstrip("/") + status_url, timeout=TIMEOUT)
            answer.raise_for_status()
            status: dict[str, Any] = answer.json()
            if status["status"] in FINAL or time.monotonic() >= deadline:
                return status
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 1.5, 5.0)


def fetch_report(gateway: str, token: str, report_url: str, session: requests.Session | None = None,
                 lang: str = DEFAULT_LANG) -> str:
    """The text form of a decided batch's rejection report, from the gateway, in the reader's language."""
    with _or_new(session, token) as http:
        answer = http.get(gateway.rstrip("/") + report_url, params={"format": "text", "lang": lang},
                          headers={"Accept-Language": lang.replace("_", "-")}, timeout=TIMEOUT)
    answer.raise_for_status()
    return answer.text.rstrip("\n")


def gateway_error(answer: requests.Response) -> str:
    """The gateway's sentence for a refusal (its JSON `error`), else the start of the body."""
    try:
        return str(answer.json()["error"])
    except (ValueError, KeyError, TypeError):
        return answer.text[:500]
