"""paas/supervisor.py: `paas up`'s forked children and the small program
that watches them, with real processes and signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from paas import supervisor
from paas.errors import Conflict

ROOT = Path(__file__).resolve().parents[2]


def _exit_with(code: int) -> None:
    sys.exit(code)


def _refuse() -> None:
    raise Conflict("the name is\n  taken")


def _import_something() -> None:
    import wave  # noqa: F401 - the point: loaded in the child only


def test_a_child_returns_its_code_and_keeps_its_imports(capfd: pytest.CaptureFixture[str]) -> None:
    assert supervisor.run_in_child("t-ok", lambda: None) == 0
    assert supervisor.run_in_child("t-exit", _exit_with, 3) == 3
    assert supervisor.run_in_child("t-error", _refuse) == 1
    assert "error: the name is taken" in capfd.readouterr().err
    assert "wave" not in sys.modules
    assert supervisor.run_in_child("t-import", _import_something) == 0
    assert "wave" not in sys.modules


def test_a_child_is_named_and_a_signal_ends_it() -> None:
    pid = supervisor.start_child("paas-test-kid", time.sleep, 30)
    try:
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}/comm").read_text().strip() != "paas-test-kid":
            assert time.monotonic() < deadline, "the child never named itself"
            time.sleep(0.01)
    finally:
        os.kill(pid, signal.SIGTERM)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == -signal.SIGTERM


# `paas up` as a whole: children forked, then the parent execs the supervisor
UP = """
import signal, sys, time
from paas import supervisor

def serve():
    time.sleep(60)

def stubborn():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)

def crash():
    time.sleep(0.3)
    sys.exit(4)

kinds = {"serve": serve, "stubborn": stubborn, "crash": crash}
children = {}
for arg in sys.argv[1:]:
    name, kind = arg.split(":")
    children[name] = supervisor.start_child("t-" + name, kinds[kind])
print(" ".join(f"{n}={p}" for n, p in children.items()), flush=True)
supervisor.exec_supervisor(children, grace=1)
"""


def _up(*children: str) -> tuple[subprocess.Popen[str], dict[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(UP), *children],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    pids = dict((n, int(p)) for n, p in (pair.split("=") for pair in proc.stdout.readline().split()))
    return proc, pids


def _wait_for_exec(proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 10
    while b"paas.supervisor" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, "the parent never became the supervisor"
        time.sleep(0.01)


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_sigterm_stops_every_child_and_the_supervisor_exits_0() -> None:
    proc, pids = _up("web:serve", "agent:serve")
    _wait_for_exec(proc)
    for pid in pids.values():  # the same pid after exec: the children are still its own
        assert int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == proc.pid
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert all(_gone(pid) for pid in pids.values())


def test_a_child_that_dies_stops_the_other_and_paas_up_fails_saying_which() -> None:
    proc, pids = _up("web:crash", "agent:serve")
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert "error: web stopped unexpectedly" in err
    assert _gone(pids["agent"])


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_time() -> None:
    proc, pids = _up("web:serve", "agent:stubborn")
    _wait_for_exec(proc)
    time.sleep(0.2)  # the stubborn child has set its handler
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert "agent did not stop within 1 s of SIGTERM: killing it" in err
    assert time.monotonic() - started >= 1
    assert _gone(pids["agent"])


# the agent's stop (issue 18): a burst of signals while the main thread waits on the Event
AGENT_STOP = """
import signal, sys, threading
from paas.daemons import stop_on_signals
stop = threading.Event()
if sys.argv[1] == "pipe":
    stop_on_signals(stop)
else:  # what run_agent did before: Event.set in the handler
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
print("ready", flush=True)
while not stop.wait(0.0001):
    pass
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the burst goes on while this exits
print("stopped", flush=True)
"""


def _burst_of_sigterms(how: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", AGENT_STOP, how], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    for _ in range(300):
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.0005)
    return proc


def test_the_agent_stops_on_a_burst_of_signals() -> None:
    proc = _burst_of_sigterms("pipe")
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0 and out == "stopped\n"


def test_a_lean_daemon_talks_to_docker_without_an_encoding_guesser() -> None:
    """What `paas up`, `paas agent` and `paas web` leave out (paas/daemons.py
    _lean): the Docker SDK still imports, without a warning, and requests
    reads an answer that names no charset as utf-8 instead of guessing."""
    code = textwrap.dedent(
        """
        import sys, warnings
        from paas.daemons import _lean
        warnings.simplefilter("error")  # any other warning still fails this
        _lean()
        import docker, requests
        response = requests.Response()
        response._content = "héllo".encode()
        assert response.text == "héllo", response.text
        left_out = ("charset_normalizer", "chardet", "httpx._main", "pydantic.v1")
        assert all(sys.modules.get(name) is None for name in left_out), left_out
        print("ok", docker.__version__)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok ")
