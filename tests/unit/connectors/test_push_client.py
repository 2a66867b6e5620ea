"""`civicnet push` survives a gateway that drops kept-alive connections.

A real loopback HTTP server (raw sockets, so the drop is deterministic) answers each connection's
first request and keeps the connection open, as a keep-alive server does; a second request on the
same connection is read and then answered with a TCP reset, which is what a client sees when the
server's keep-alive timeout closes the connection just as the next poll is sent (uvicorn's default is
5 s, the client's pauses grow to 5 s). A POST can be reset once too, after it was read."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from connectors.push.client import fetch_report, gateway_session, send_file, wait_for_verdict


class DroppingServer:
    """Answers the first request of every connection; resets a connection's second request, and the
    first `reset_posts` POSTs."""

    def __init__(self, statuses: list[str], reset_posts: int = 0) -> None:
        self.statuses, self.reset_posts = statuses, reset_posts
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[str] = []  # "METHOD path" of every request read, answered or not
        self.resets = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_request(conn: socket.socket) -> str | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next((int(h.split(":", 1)[1]) for h in lines if h.lower().startswith("content-length:")), 0)
        while len(body) < length:
            body += conn.recv(65536)
        return " ".join(lines[0].split(" ")[:2])

    def _answer(self, request: str) -> bytes | None:
        with self.lock:
            self.requests.append(request)
            if request.startswith("POST") and self.reset_posts > 0:
                self.reset_posts -= 1
                return None
            if request.startswith("POST"):
                body = {"batch_id": "b", "status_url": "/v1/batches/b"}
            elif "/report" in request:
                return self._response(b"the report\n", "text/plain")
            else:
                gets = sum(1 for r in self.requests if r.startswith("GET") and "/report" not in r)
                body = {"batch_id": "b", "status": self.statuses[min(gets, len(self.statuses)) - 1]}
        return self._response(json.dumps(body).encode(), "application/json")

    @staticmethod
    def _response(body: bytes, media_type: str) -> bytes:
        return (f"HTTP/1.1 200 OK\r\nContent-Type: {media_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: keep-alive\r\n\r\n").encode() + body

    def _connection(self, conn: socket.socket) -> None:
        with conn:
            served = 0
            while (request := self._read_request(conn)) is not None:
                answer = self._answer(request) if served == 0 else None
                if answer is None:  # the keep-alive ran out as this request arrived: reset
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    with self.lock:
                        self.resets += 1
                    return
                conn.sendall(answer)
                served += 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[DroppingServer]:
    statuses, reset_posts = request.param
    srv = DroppingServer(statuses, reset_posts)
    yield srv
    srv.close()


@pytest.mark.parametrize("server", [(["received", "checked", "applied"], 0)], indirect=True)
def test_polls_on_a_dropped_keep_alive_connection_are_retried(server: DroppingServer) -> None:
    status = wait_for_verdict(server.url, "t", "/v1/batches/b", wait=30)
    assert status["status"] == "applied"
    assert server.resets >= 2  # the second and third polls each met a dropped connection


@pytest.mark.parametrize("server", [(["applied"], 0)], indirect=True)
def test_the_report_is_read_after_the_poll_on_a_fresh_connection(server: DroppingServer) -> None:
    with gateway_session("t") as session:
        assert wait_for_verdict(server.url, "t", "/v1/batches/b", 5, session)["status"] == "applied"
        assert fetch_report(server.url, "t", "/v1/batches/b/report", session) == "the report"
    assert server.resets == 1


@pytest.mark.parametrize("server", [(["applied"], 1)], indirect=True)
def test_a_post_reset_before_its_answer_is_sent_again(server: DroppingServer, tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("a\n1\n", "utf-8")
    answer = send_file(server.url, "t", "community_expenditures", path, "text/csv")
    assert answer.status_code == 200
    assert answer.json()["status_url"] == "/v1/batches/b"
    assert [r for r in server.requests if r.startswith("POST")] == \
        ["POST /v1/datasets/community_expenditures/batches"] * 2


@pytest.mark.parametrize("server", [(["applied"], 99)], indirect=True)
def test_a_gateway_that_keeps_dropping_is_reported_after_the_retries(server: DroppingServer,
                                                                     tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("a\n1\n", "utf-8")
    with pytest.raises(requests.ConnectionError):
        send_file(server.url, "t", "community_expenditures", path, "text/csv")
    assert 2 <= sum(1 for r in server.requests if r.startswith("POST")) <= 10
