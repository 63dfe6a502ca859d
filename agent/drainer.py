"""Old releases' containers, retired apart from the jobs: drained, then stopped.

A release is live from its switch: nginx sends the containers of the release
before it nothing new, but they still hold the requests nginx gave them. The
retire step hands those containers here and ends, so the next job for the app
(a push a second later, a rollback the moment errors show) starts at once.
Each is stopped (SIGTERM, ``PAAS_STOP_TIMEOUT``, SIGKILL) and removed
``PAAS_DRAIN_SECONDS`` after it was handed over: the drain lasts as long as it
did when the job waited for it.

Nothing is kept but this list in memory: what drains is what Docker holds
(an app's containers outside its live release, none of a running job's),
and an agent that starts again finds it there (``Agent.reconcile_app``) and
drains it anew, for the whole drain: never shorter than one cut short.
A rollback to the release being drained takes its containers back
(``take_back``) instead of starting new ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.deploylog import DeployLog
from agent.docker_engine import EngineError
from agent.doors import EngineDoor
from paas.settings import Settings

__all__ = ["Drainer"]

log = logging.getLogger("paas.agent.drainer")

RETRY_SECONDS = 30.0  # the engine refused a stop: try again this much later
TRIES = 3


@dataclass
class _Due:
    app: str
    at: float  # time.monotonic() when it is stopped
    log_path: Path | None  # the release log of the release that retired it
    tries: int = 0


class Drainer:
    """Containers waiting out their drain; each is stopped by a thread of its
    own that ends with the stop (an idle agent keeps none). Its thread starts
    with the first container handed over."""

    def __init__(
        self,
        docker: EngineDoor,
        settings: Settings,
        *,
        needed: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.docker = docker
        self.settings = settings
        # (app, container): asked before each stop; True keeps it (it went live meanwhile, or a
        # job made it after the list it came in was taken)
        self.needed = needed
        self._due: dict[str, _Due] = {}
        self._stopping: dict[str, str] = {}  # name → app, being stopped now
        self._forgotten: set[str] = set()  # being stopped, of an app deleted since: never tried again
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False

    # what the agent asks ------------------------------------------------------------------

    def retire(
        self, app: str, names: Iterable[str], *, log_path: Path | None = None, drain: float | None = None
    ) -> list[str]:
        """Stop and remove ``names`` once ``drain`` seconds (PAAS_DRAIN_SECONDS)
        have passed; one already draining keeps its first time. The names taken."""
        at = time.monotonic() + (self.settings.drain_seconds if drain is None else drain)
        taken = []
        with self._cond:
            for name in names:
                if name in self._stopping or name in self._due:
                    continue
                self._due[name] = _Due(app, at, log_path)
                taken.append(name)
            self._start()
            self._cond.notify_all()
        return taken

    def take_back(self, names: Iterable[str]) -> bool:
        """Keep ``names`` after all (a rollback to their release): True if
        every one was still waiting out its drain, and none is stopped now;
        False, and nothing changed, otherwise."""
        wanted = list(names)
        with self._cond:
            if not wanted or any(name not in self._due for name in wanted):
                return False
            for name in wanted:
                del self._due[name]
            self._cond.notify_all()
            return True

    def forget(self, app: str) -> None:
        """The app is going (its containers are removed by the delete job): a
        stop under way is not tried again, since a new app of that name may
        soon run containers of the same names."""
        with self._cond:
            for name in [n for n, d in self._due.items() if d.app == app]:
                del self._due[name]
            self._forgotten.update(n for n, a in self._stopping.items() if a == app)
            self._cond.notify_all()

    def draining(self, app: str | None = None) -> dict[str, float]:
        """Container → seconds left before it is stopped (0: stopping now)."""
        now = time.monotonic()
        with self._cond:
            left = {n: max(0.0, d.at - now) for n, d in self._due.items() if app in (None, d.app)}
            left.update({n: 0.0 for n, a in self._stopping.items() if app in (None, a)})
            return left

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing drains or stops; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._due or self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self, timeout: float) -> None:
        """The agent stops: finish the drains under way (each at its time),
        for at most ``timeout`` seconds; what is left the next start drains again."""
        if not self.wait_idle(timeout):
            with self._cond:
                left = sorted(self._due) + sorted(self._stopping)
            log.warning("stopping with %d container(s) still draining: %s", len(left), ", ".join(left))
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    # the thread ---------------------------------------------------------------------------

    def _start(self) -> None:
        """Called holding the lock."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="drainer")
            self._thread.start()

    def _loop(self) -> None:
        with self._cond:
            while not self._closing:
                now = time.monotonic()
                for name in [n for n, d in self._due.items() if d.at <= now]:
                    due = self._due.pop(name)
                    self._stopping[name] = due.app
                    threading.Thread(target=self._stop, args=(name, due), daemon=True, name="drain").start()
                wait = min((d.at for d in self._due.values()), default=now + 3600) - now
                self._cond.wait(max(wait, 0.01))

    def _stop(self, name: str, due: _Due) -> None:
        line, again = f"stopped {name} (drained)", False
        try:
            if self.needed is not None and self.needed(due.app, name):
                log.warning(
                    "%s: not stopping %s: it is the live release's, or a running job's", due.app, name
                )
                line = f"kept {name}: it serves now"
            else:
                self.docker.stop_and_remove(name, timeout=self.settings.stop_timeout)
        except EngineError as exc:
            again = due.tries + 1 < TRIES
            line = f"could not stop {name}: {exc}" + (
                f"; trying again in {RETRY_SECONDS:g}s" if again else ""
            )
            log.error("%s (%s)", line, due.app)
        except Exception:  # noqa: BLE001  (a bug must not leave it in _stopping)
            log.exception("stopping %s", name)
            line = f"could not stop {name}: internal error (see paas's log)"
        else:
            log.info("%s: %s", due.app, line)
        self._tell(due, line)
        with self._cond:
            self._stopping.pop(name, None)
            if name in self._forgotten:
                self._forgotten.discard(name)
                again = False
            if again and not self._closing:
                self._due[name] = _Due(due.app, time.monotonic() + RETRY_SECONDS, due.log_path, due.tries + 1)
            self._cond.notify_all()

    def _tell(self, due: _Due, line: str) -> None:
        """Into the release log of the release that retired it, when there is one."""
        if due.log_path is None:
            return
        try:
            with DeployLog(due.log_path, under=self.settings.data_dir) as dlog:
                dlog.line(line)
        except OSError as exc:  # gone with its release's log, or a full disk: paas's own log has it
            log.debug("cannot write %s: %s", due.log_path, exc)
