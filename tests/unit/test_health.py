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


class FakeTime:
    def __init__(self) -> None:
        self.now, self.slept = 0.0, []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


SLOW = HealthCheck(host="127.0.0.1", port=1, path="/healthz", interval=1.0, timeout=2, retries=5)


def test_a_container_is_seen_healthy_within_tens_of_milliseconds_not_an_interval() -> None:
    """The app answers 0.6 s after start: checks every 50 ms see it then,
    not at the next whole interval (1 s) as they used to."""
    from agent.health import FAST_SECONDS, wait_healthy

    t, lines = FakeTime(), []
    wait_healthy(
        SLOW,
        alive=lambda: None,
        on_line=lines.append,
        sleep=t.sleep,
        clock=t.clock,
        probe=lambda _c: (
            t.now >= 0.6,
            "GET /healthz: 200" if t.now >= 0.6 else "GET /healthz: ConnectError",
        ),
    )
    assert set(t.slept) == {FAST_SECONDS} and 0.6 <= t.now < 0.6 + FAST_SECONDS + 1e-9
    assert lines[-1].startswith("healthy after 13 attempt(s) in 0.6")


def test_the_budget_is_still_retries_times_interval() -> None:
    from agent.health import Unhealthy, wait_healthy

    t, lines = FakeTime(), []
    with pytest.raises(Unhealthy, match=r"not healthy after 5s \(5 × 1s\); last: GET /healthz: 503"):
        wait_healthy(
            SLOW, alive=lambda: None, on_line=lines.append, sleep=t.sleep, clock=t.clock,
            probe=lambda _c: (False, "GET /healthz: 503"),
        )  # fmt: skip
    assert 5.0 <= t.now < 5.1
    assert [line.split(":")[0] for line in lines] == ["waiting for health (0s of 5s)"]


def test_a_container_that_stops_fails_at_once() -> None:
    from agent.health import Unhealthy, wait_healthy

    t = FakeTime()
    with pytest.raises(Unhealthy, match="stopped before it was healthy: exited with status 1"):
        wait_healthy(SLOW, alive=lambda: "exited with status 1", on_line=print, sleep=t.sleep, clock=t.clock)
    assert t.slept == []
