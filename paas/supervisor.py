"""``paas up``'s processes: forked children and the loop that watches them.

Web and the agent are forked from one parent that has imported both of
them first (``preload``), so the pages holding the modules they have in
common (SQLAlchemy, pydantic, FastAPI, httpx …: about 60 MiB) are shared
copy-on-write rather than loaded twice; ``gc.freeze`` keeps the collector
from writing to them. The parent starts no thread and opens no database
connection, so a fork copies nothing half-done. It then execs this module
(``exec_supervisor``): the same pid, so web and the agent are still its
children, but a fresh interpreter that imports only the standard library
and paas.errors. Had it kept its memory, every page both children wrote to
would be held three times. No multiprocessing either, so no resource
tracker process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable

# The supervisor that `paas up` execs imports no more than it runs (the
# standard library's typing, enum and logging would add 2 MiB to it): what
# only the parent or the children use is imported inside the function.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

__all__ = ["exec_supervisor", "preload", "run_in_child", "start_child", "supervise", "supervisor_argv"]

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def preload(modules: Iterable[str]) -> None:
    """Import ``modules`` now, in the parent, and move every object made so
    far out of the collector's reach, so that the children share them."""
    import gc
    import importlib

    gc.disable()
    try:
        for name in modules:
            importlib.import_module(name)
    finally:
        gc.freeze()
        gc.enable()


def start_child(name: str, target: Callable[..., Any], *args: Any) -> int:
    """Fork a child that runs ``target(*args)`` and exits: 0 when it returns,
    its code on SystemExit, 1 on any error (printed). The child's process
    name (``ps -o comm``, ``top``) is ``name``."""
    import traceback

    from paas.errors import PaasError

    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the target installs its own
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _name_process(name)
        target(*args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except PaasError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except BaseException:  # noqa: BLE001 - a child must never return into the parent's code
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def run_in_child(name: str, target: Callable[..., Any], *args: Any) -> int:
    """Run ``target(*args)`` in a forked child and wait: its exit code. What
    it imports goes away with it."""
    _, status = os.waitpid(start_child(name, target, *args), 0)
    return os.waitstatus_to_exitcode(status)


def supervise(
    children: dict[str, int], *, grace: float = 60, poll: float = 0.2
) -> tuple[dict[str, int], bool]:
    """Wait until a child exits or SIGTERM/SIGINT arrives, then stop the
    others (SIGTERM, then SIGKILL after ``grace`` seconds). Each child's
    exit code (negative: the signal that ended it), and whether a signal
    asked for the stop.

    The handlers only set a flag: a lock taken in a signal handler can
    deadlock against the main thread holding it."""
    signalled: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        signalled.append(signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # held over exec_supervisor's exec
    exited: dict[str, int] = {}
    while not signalled and not exited:
        _reap(children, exited)
        if not exited:
            time.sleep(poll)
    for name, pid in children.items():
        if name not in exited:
            _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while len(exited) < len(children) and time.monotonic() < deadline:
        _reap(children, exited)
        time.sleep(min(poll, 0.05))
    for name, pid in children.items():
        if name not in exited:
            import logging

            said = "%s did not stop within %.0f s of SIGTERM: killing it"
            logging.getLogger("paas.up").warning(said, name, grace)
            _kill(pid, signal.SIGKILL)
            exited[name] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return exited, bool(signalled)


def exec_supervisor(children: dict[str, int], *, grace: float = 60) -> NoReturn:
    """Become ``python -m paas.supervisor``, which supervises ``children``
    (name → pid) and exits 1 if one stops unexpectedly. A stop signal that
    arrives meanwhile waits, blocked, until the new program handles it."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    os.chdir("/")  # where `paas up` was started may be anyone's: nothing of it is used
    argv = supervisor_argv(children, grace=grace)
    os.execv(argv[0], argv)  # noqa: S606 - a list


def supervisor_argv(children: dict[str, int], *, grace: float) -> list[str]:
    """``python -I -m paas.supervisor``: ``-I`` puts neither the working
    directory nor ``PYTHONPATH`` on ``sys.path`` (a ``paas/`` planted there
    would run as root) and skips the user's site directory; paas is imported
    from the interpreter's own site-packages (an editable install's ``.pth``
    included)."""
    argv = [sys.executable, "-I", "-m", "paas.supervisor", f"--grace={grace:g}"]
    return argv + [f"{name}={pid}" for name, pid in children.items()]


def main(argv: list[str] | None = None) -> int:
    """``python -m paas.supervisor [--grace=S] NAME=PID …``"""
    grace, children = 60.0, {}
    for arg in sys.argv[1:] if argv is None else argv:
        if arg.startswith("--grace="):
            grace = float(arg.removeprefix("--grace="))
        else:
            name, _, pid = arg.partition("=")
            children[name] = int(pid)
    exited, signalled = supervise(children, grace=grace)
    dead = [name for name, code in exited.items() if code not in (0, -signal.SIGTERM)]
    if dead and not signalled:
        print(f"error: {', '.join(dead)} stopped unexpectedly", file=sys.stderr)
        return 1
    return 0


def _reap(children: dict[str, int], exited: dict[str, int]) -> None:
    for name, pid in children.items():
        if name in exited:
            continue
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            exited[name] = -1
            continue
        if done:
            exited[name] = os.waitstatus_to_exitcode(status)


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _name_process(name: str) -> None:
    """What ps, top and pgrep show as the process's name (15 bytes at most)."""
    try:
        with open("/proc/self/comm", "w", encoding="ascii") as comm:
            comm.write(name[:15])
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
