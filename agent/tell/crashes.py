"""Crashes and out-of-memory kills of app containers, from Docker's event
stream, as notifications (agent/tell/teller.py).

A container that dies with no ``kill`` before it exited by itself: a crash
(its restart policy brings it back; the notification says so). An ``oom``
event before the death: killed by its memory limit. A ``kill`` first: it was
stopped, by paas retiring a release or by someone's ``docker stop``; not
news. Only containers of the live release count: one of a deploy that is
still starting fails that deploy, which says so itself. One notification
of each kind per app per ``quiet`` seconds, so a crash loop is one message, not hundreds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.docker_engine import DockerEngine, EngineError
from agent.plan import owned
from paas.schemas import APP_NAME

__all__ = ["CrashWatch"]

log = logging.getLogger("paas.agent.crashes")

Tell = Callable[..., object]  # Teller.event(event, app_name=, title=, body=, kind=)


class CrashWatch:
    def __init__(
        self,
        docker: DockerEngine,
        instance: str,
        tell: Tell,
        *,
        quiet: float = 300,
        is_live: Callable[[str, str, str], bool] | None = None,
    ) -> None:
        self.docker = docker
        self.is_live = is_live  # (app, name, its paas.deployment label): of the live release?
        self.instance = instance
        self.tell = tell
        self.quiet = quiet
        self._stopped: dict[str, float] = {}  # container id -> when a kill was seen
        self._oom: set[str] = set()
        self._last: dict[tuple[str, bool], float] = {}  # (app, oom) -> when it was last told

    def run(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self._loop, args=(stop,), daemon=True, name="crash-watch")
        thread.start()
        return thread

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                for event in self.docker.events(owned(self.instance), ["kill", "oom", "die"]):
                    self.seen(event)
                    if stop.is_set():
                        return
            except EngineError as exc:
                log.warning("Docker's event stream ended (%s); listening again in 5 s", exc)
            except Exception:  # noqa: BLE001  (keep watching, whatever one event held)
                log.exception("reading Docker's events failed")
            stop.wait(5)

    def seen(self, event: dict[str, Any]) -> None:
        """One event from the stream."""
        action = str(event.get("Action") or event.get("status") or "")
        actor = event.get("Actor") or {}
        cid = str(actor.get("ID") or event.get("id") or "")
        attributes = actor.get("Attributes") or {}
        now = time.monotonic()
        for old in [k for k, at in self._stopped.items() if now - at > 600]:
            del self._stopped[old]
        if action == "kill":
            self._stopped[cid] = now
            return
        if action == "oom":
            self._oom.add(cid)
            return
        if action != "die" or self._stopped.pop(cid, None) is not None:
            return
        oom = cid in self._oom
        self._oom.discard(cid)
        app, process = str(attributes.get("paas.app", "")), str(attributes.get("paas.process", ""))
        # a release command's failure fails its deploy, as does a new release's container
        if not APP_NAME.fullmatch(app) or process == "release":
            return
        name, code = str(attributes.get("name", cid[:12])), str(attributes.get("exitCode", "?"))
        if self.is_live is not None and not self.is_live(
            app, name, str(attributes.get("paas.deployment", ""))
        ):
            return
        if now - self._last.get((app, oom), float("-inf")) < self.quiet:
            return
        self._last[(app, oom)] = now
        if oom:
            self.tell(
                "app.oom",
                app_name=app,
                title=f"{app}: a container was killed by its memory limit",
                body=f"{name} ({process or 'web'}) ran out of memory; Docker restarts it. "
                f"Raise the limit with `paas apps set {app} --memory …`.",
                kind="failure",
            )
        else:
            self.tell(
                "app.crashed",
                app_name=app,
                title=f"{app}: a container exited with code {code}",
                body=f"{name} ({process or 'web'}) stopped on its own; Docker restarts it. "
                f"`paas logs {app}` shows why.",
                kind="failure",
            )
