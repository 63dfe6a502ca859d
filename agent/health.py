"""Health: is the new web container answering on its published port?

HTTP GET on the app's health path (any status below 400 passes), else a TCP
connection that stays open (Docker's proxy accepts and then drops connections
while the app is not listening yet). Tries until ``retries`` attempts have failed, giving up early if
the container has exited.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from agent.probe import get as http_get
from paas.errors import PaasError

__all__ = ["HealthCheck", "Unhealthy", "check_once", "wait_healthy"]

TCP_HOLD_SECONDS = 0.3


class Unhealthy(PaasError):
    """The container never passed its health check, or stopped first."""


@dataclass(frozen=True)
class HealthCheck:
    host: str
    port: int
    path: str | None
    interval: float
    timeout: float
    retries: int


def check_once(check: HealthCheck) -> tuple[bool, str]:
    if check.path:
        url = f"http://{check.host}:{check.port}{check.path}"
        try:
            response = http_get(url, timeout=check.timeout)
        except httpx.HTTPError as exc:
            return False, f"GET {check.path}: {type(exc).__name__}"
        ok = response.status_code < 400
        return ok, f"GET {check.path}: {response.status_code}"
    # Docker's userland proxy accepts on the published port before the app
    # listens, then closes the connection: connected-and-held is the signal.
    try:
        with socket.create_connection((check.host, check.port), timeout=check.timeout) as conn:
            conn.settimeout(TCP_HOLD_SECONDS)
            try:
                closed = conn.recv(1) == b""
            except TimeoutError:
                closed = False  # still open: something is listening behind the port
            if closed:
                return False, f"TCP {check.port}: accepted, then closed (the app is not listening yet)"
            return True, f"TCP {check.port}: connected"
    except OSError as exc:
        return False, f"TCP {check.port}: {exc.strerror or exc}"


FAST_SECONDS = 0.05  # between checks: a new container usually answers well within a second


def wait_healthy(
    check: HealthCheck,
    *,
    alive: Callable[[], str | None],
    on_line: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    probe: Callable[[HealthCheck], tuple[bool, str]] = check_once,
) -> None:
    """Return once healthy; raise Unhealthy with the reason otherwise.

    ``alive`` returns None while the container runs, else why it stopped.
    The app's settings give the budget: ``retries`` checks ``interval`` apart,
    that is ``retries × interval`` seconds. Within it, checks come every
    FAST_SECONDS, so a container is switched in within tens of milliseconds
    of its first good answer instead of up to a whole interval later.
    """
    budget = check.retries * check.interval
    started = clock()
    last, attempt, reported = "", 0, -1
    while True:
        attempt += 1
        dead = alive()
        if dead:
            raise Unhealthy(f"the container stopped before it was healthy: {dead}")
        ok, last = probe(check)
        elapsed = clock() - started
        if ok:
            on_line(f"healthy after {attempt} attempt(s) in {elapsed:.2f}s: {last}")
            return
        if elapsed >= budget:
            break
        every = int(elapsed // (10 * check.interval))  # a line at the start, then every 10 intervals
        if every != reported:
            reported = every
            on_line(f"waiting for health ({elapsed:.0f}s of {budget:g}s): {last}")
        sleep(min(FAST_SECONDS, check.interval))
    raise Unhealthy(f"not healthy after {budget:g}s ({check.retries} × {check.interval:g}s); last: {last}")
