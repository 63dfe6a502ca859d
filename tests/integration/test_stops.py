"""Stops that always stop: `paas up` for real (supervisor, web, agent), sent
SIGTERM, SIGINT and bursts of both, to its process group (Ctrl-C in a
terminal), to the supervisor and to each child, over and over. Every time,
every process is gone within STOP_BOUND seconds and nothing is left.

The bound: the agent, idle, stops at once (its signal handler only writes
to a pipe); web's uvicorn gives open requests up to 10 s
(timeout_graceful_shutdown); the supervisor forwards the stop and waits.
A running deploy finishes first (tests/integration/test_upgrade.py and the
README's "Upgrading"); these stops are idle ones.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from testkit.harness import Nginx, Stack
from tests.integration.installs import workers

pytestmark = pytest.mark.integration

STOP_BOUND = 12.0  # seconds: web's 10 s grace for open requests, and margin

PATTERNS = {
    "SIGTERM": [signal.SIGTERM],
    "SIGINT": [signal.SIGINT],
    "a burst": [signal.SIGINT, signal.SIGTERM] * 10,
}


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # exited; its parent has yet to reap it


@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize("target", ["process group", "supervisor", "paas-web", "paas-agent"])
def test_every_stop_ends_within_the_bound(nginx: Nginx, tmp_path: Path, target: str, pattern: str) -> None:
    stack = Stack(tmp_path, nginx)
    try:
        for attempt in range(2):
            stack.start()
            assert stack.proc is not None
            supervisor = stack.proc.pid
            running = workers(supervisor)
            assert set(running) == {"paas-web", "paas-agent"}, running
            started = time.monotonic()
            for sig in PATTERNS[pattern]:
                if target == "process group":
                    os.killpg(supervisor, sig)
                else:
                    os.kill(supervisor if target == "supervisor" else running[target], sig)
                time.sleep(0.001)
            try:
                code = stack.proc.wait(timeout=STOP_BOUND)
            except subprocess.TimeoutExpired:
                log = stack.log_path.read_text()[-3000:]
                what = f"{target} {pattern} #{attempt}"
                raise AssertionError(f"{what}: running after {STOP_BOUND} s\n{log}") from None
            took = time.monotonic() - started
            assert all(_gone(pid) for pid in running.values()), (target, pattern, running)
            assert code in (0, 1), code  # 1: a child that stopped alone is named in the log
            print(f"{target} {pattern} #{attempt}: stopped in {took:.2f} s (exit {code})")
    finally:
        stack.stop()
        stack.remove_everything()
