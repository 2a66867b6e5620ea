"""A gateway that cannot start says so with a terminal error naming its address, instead of waiting."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from civicnet.gateway.app import GatewayServer, GatewayStartError
from civicnet.gateway.trigger import NoTrigger
from schemas.errors import TerminalError


# uvicorn ends its thread with sys.exit(3) when it cannot bind: that thread's SystemExit is expected
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_taken_port_is_a_terminal_error_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = GatewayServer(tmp_path, NoTrigger(), feeds={}, port=port)
        with pytest.raises(GatewayStartError, match=f"could not start on 127.0.0.1:{port}") as caught:
            server.start()
    assert isinstance(caught.value, TerminalError)
