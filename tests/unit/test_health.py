"""The TCP health check against real sockets: a listener that accepts and
drops the connection (what Docker's proxy does while the app is not yet
listening) is not healthy; one that holds it open is."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from agent.health import HealthCheck, check_once


@pytest.fixture
def listener(request: pytest.FixtureRequest) -> Iterator[int]:
    drop = bool(request.param)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            if drop:
                conn.close()
            else:
                held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in held:
        conn.close()


def check(port: int) -> tuple[bool, str]:
    return check_once(HealthCheck(host="127.0.0.1", port=port, path=None, interval=0.1, timeout=2, retries=1))


@pytest.mark.parametrize("listener", [True], indirect=True)
def test_accepted_then_dropped_is_not_healthy(listener: int) -> None:
    ok, detail = check(listener)
    assert not ok and "accepted, then closed" in detail


@pytest.mark.parametrize("listener", [False], indirect=True)
def test_a_held_connection_is_healthy(listener: int) -> None:
    assert check(listener) == (True, f"TCP {listener}: connected")


def test_nothing_listening_is_not_healthy() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ok, detail = check(port)
    assert not ok and detail.startswith(f"TCP {port}:")
