"""The one door to subprocesses. Nothing else in paas, agent or web imports
``subprocess``: an import-linter contract (pyproject.toml, run by
scripts/test.sh) fails the tests on one that does.

Commands are argument lists, never shell strings. Builders that decide the
arguments are pure functions (``nginx_test_args`` ...), tested by equality;
``run`` executes one and reads its output as one text, ``capture`` one
whose stdout is data (stderr apart), with its input, user and environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess  # noqa: S404  (the one module allowed to)
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from paas.dockerfile import Command, GoParseError, command_of
from paas.errors import InvalidInput

__all__ = [
    "Captured",
    "CommandResult",
    "Streamed",
    "TimedOut",
    "capture",
    "certbot_args",
    "nginx_reload_args",
    "nginx_test_args",
    "parse_dockerfile",
    "run",
    "stream",
]


@dataclass(frozen=True)
class CommandResult:
    args: tuple[str, ...]
    returncode: int
    output: str  # stdout and stderr, interleaved

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass(frozen=True)
class Captured:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class TimedOut(Exception):
    """A command was still running at its timeout (it was killed): ``capture``
    raises it, ``run`` answers exit 124 with its words."""


def _spawn(args: object, caller: str, *, timeout: float, **how: Any) -> subprocess.CompletedProcess[Any]:
    """Run ``args``, a non-empty list of strings (no shell), to its end; what
    ``run`` and ``capture`` share. ``how`` is how its input and output are
    connected (subprocess.run's arguments). At ``timeout`` it is killed and
    :class:`TimedOut` raised; a missing binary raises ``FileNotFoundError``."""
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        raise TypeError(f"{caller}() takes a non-empty list of strings")
    try:
        return subprocess.run(args, timeout=timeout, check=False, **how)  # noqa: S603  (argument list, no shell)
    except subprocess.TimeoutExpired:
        raise TimedOut(f"{args[0]}: timed out after {timeout}s") from None


def run(args: list[str], *, timeout: float = 60, env: dict[str, str] | None = None) -> CommandResult:
    """Run ``args`` (no shell), capturing output; ``env`` adds to the
    environment. A missing binary or a timeout is a failed result, not an
    exception."""
    try:
        proc = _spawn(
            args,
            "run",
            timeout=timeout,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env} if env else None,
        )
    except FileNotFoundError:
        return CommandResult(tuple(args), 127, f"{args[0]}: command not found")
    except TimedOut as exc:
        return CommandResult(tuple(args), 124, str(exc))
    return CommandResult(tuple(args), proc.returncode, proc.stdout.decode("utf-8", "replace"))


def capture(
    args: list[str],
    *,
    timeout: float,
    input: str | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | None = None,
    user: int | None = None,
    group: int | None = None,
    extra_groups: Sequence[int] | None = None,
    umask: int = -1,
    encoding: str | None = None,
) -> Captured:
    """Run ``args`` (no shell) and capture its stdout and stderr apart, as
    text. stdin is ``input`` (else this process's). ``environ`` is the whole
    environment (None: this process's); ``cwd``, ``user``, ``group``,
    ``extra_groups`` (``()``: none) and ``umask`` are the child's (None and
    -1: this process's). A missing binary raises ``FileNotFoundError``, a
    timeout :class:`TimedOut`: callers say which in their own words."""
    proc = _spawn(
        args,
        "capture",
        timeout=timeout,
        input=input,
        capture_output=True,
        text=True,
        encoding=encoding,
        env=None if environ is None else dict(environ),
        cwd=cwd,
        user=user,
        group=group,
        extra_groups=None if extra_groups is None else list(extra_groups),
        umask=umask,
    )
    return Captured(tuple(args), proc.returncode, proc.stdout, proc.stderr)


@dataclass(frozen=True)
class Streamed:
    returncode: int
    stopped: str  # why it was interrupted ("cancelled", "timed out"), or "" if it ran to its end
    tail: tuple[str, ...]  # its last lines of output


def stream(
    args: list[str],
    *,
    environ: Mapping[str, str],
    input: str,
    on_line: Callable[[str], None],
    should_stop: Callable[[], bool],
    timeout: float,
    grace: float = 10,
    keep: int = 20,
) -> Streamed:
    """Run ``args`` (no shell) with ``environ`` as its whole environment and
    ``input`` on stdin, handing each line it prints (stdout and stderr
    together) to ``on_line`` as it comes. When ``should_stop()`` says so or
    ``timeout`` passes, it gets SIGINT (a client's way to cancel what it
    asked a daemon for), then SIGKILL after ``grace`` seconds. A missing
    binary raises ``FileNotFoundError``."""
    if not args or not all(isinstance(a, str) for a in args):
        raise TypeError("stream() takes a non-empty list of strings")
    proc = subprocess.Popen(  # noqa: S603  (argument list, no shell)
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(environ),
        start_new_session=True,  # a signal to the agent's group is not the command's
    )
    stopped: list[str] = []
    done = threading.Event()

    def watch() -> None:
        started = time.monotonic()
        while not done.wait(0.25):
            if should_stop():
                stopped.append("cancelled")
            elif time.monotonic() - started > timeout:
                stopped.append(f"timed out after {timeout:g}s")
            else:
                continue
            proc.send_signal(signal.SIGINT)
            if not done.wait(grace):
                proc.kill()
            return

    watcher = threading.Thread(target=watch, daemon=True, name=f"stream-{Path(args[0]).name}")
    watcher.start()
    tail: deque[str] = deque(maxlen=keep)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(input.encode("utf-8"))
        proc.stdin.close()
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if line.strip():
                tail.append(line)
                on_line(line)
        returncode = proc.wait()
    finally:
        done.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Streamed(returncode, stopped[0] if stopped else "", tuple(tail))


# Docker's parser, in a process of its own: what it prints is its reading as JSON
_PARSE = """\
import json, sys
import dockerfile
try:
    out = [list(c) for c in dockerfile.parse_string(sys.stdin.buffer.read().decode("utf-8"))]
except dockerfile.GoParseError as exc:
    out = {"error": str(exc)}
json.dump(out, sys.stdout)  # ASCII: whatever the locale
"""


def parse_dockerfile(text: str, *, timeout: float = 30) -> tuple[Command, ...]:
    """Docker's own Dockerfile parser (paas/dockerfile.py ``parse_here``) run
    by this interpreter in a short-lived process (about 20 ms): its Go runtime
    (4 MiB and a few threads) goes with it instead of staying in the agent."""
    try:
        out = capture([sys.executable, "-I", "-c", _PARSE], input=text, timeout=timeout, encoding="utf-8")
        if out.returncode != 0:
            raise ValueError(out.stderr.strip()[-500:])
        said = json.loads(out.stdout)
        if isinstance(said, dict):
            raise GoParseError(str(said["error"]))
        return tuple(command_of(row) for row in said)
    except (TimedOut, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise InvalidInput(f"Docker's Dockerfile parser could not read it: {exc}") from None


def become(args: list[str]) -> NoReturn:
    """Replace this process with ``args`` (an argument list, no shell): a
    command that hands the terminal over (``paas databases console``)."""
    os.execvp(args[0], args)  # noqa: S606  (an argument list; the caller's process ends here)


def _nginx_base(nginx_bin: str, main_conf: Path | None) -> list[str]:
    return [nginx_bin] if main_conf is None else [nginx_bin, "-c", str(main_conf)]


def nginx_start_args(nginx_bin: str, main_conf: Path | None) -> list[str]:
    return _nginx_base(nginx_bin, main_conf)


def systemd_is_init() -> bool:
    try:
        return Path("/proc/1/comm").read_text(encoding="ascii").strip() == "systemd"
    except OSError:
        return False


def nginx_test_args(nginx_bin: str, main_conf: Path | None) -> list[str]:
    return [*_nginx_base(nginx_bin, main_conf), "-t", "-q"]


def nginx_reload_args(nginx_bin: str, main_conf: Path | None) -> list[str]:
    return [*_nginx_base(nginx_bin, main_conf), "-s", "reload"]


def certbot_args(
    certbot_bin: str,
    *,
    hostname: str,
    email: str,
    directory: str,
    webroot: Path,
    state_dir: Path,
    force_renewal: bool = False,
) -> list[str]:
    """certbot in webroot mode for one hostname (its certificate is named after it)."""
    args = [
        certbot_bin,
        "certonly",
        "--non-interactive",
        "--agree-tos",
        "--no-eff-email",
        *(["--email", email] if email else ["--register-unsafely-without-email"]),
        "--server",
        directory,
        "--webroot",
        "--webroot-path",
        str(webroot),
        "--domain",
        hostname,
        "--cert-name",
        hostname,
        "--config-dir",
        str(state_dir),
        "--work-dir",
        str(state_dir / "work"),
        "--logs-dir",
        str(state_dir / "logs"),
    ]
    return [*args, "--force-renewal"] if force_renewal else [*args, "--keep-until-expiring"]
