"""The outbox: ``Notice`` rows of one channel (GitHub reports, or
notifications), sent by one thread, in the order they were written per key
(an app for GitHub, a target for notifications), each retried with a
back-off kept on the row.

What a notice holds and how it is sent is its channel's (reports.py,
notifications.py); this is what both share. One that fails waits
(``retry``: its attempts and next try on the row, so a restart of the agent
neither forgets nor restarts a back-off) and holds back those behind it
with the same key, so statuses never arrive out of order; one whose sending
broke (a bug, the database failing) waits a minute (``defer``), never a
tight loop. A row is pending until it is sent or given up (``end``); the
ones done long ago are pruned.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, or_
from sqlmodel import Session, col, select

from agent.backoff import retry_delay
from paas.db import session_scope
from paas.models import App, Deployment, Notice, utcnow

__all__ = ["FAILED", "PENDING", "SENT", "Outbox", "aware", "not_written"]

log = logging.getLogger("paas.agent.tell")

PENDING, SENT, FAILED = "pending", "sent", "failed"
DEFER = timedelta(minutes=1)  # a notice whose sending broke waits this long
MAX_ERROR = 2000  # of a notice's last error


class Outbox:
    """One channel's notices. ``key`` says which go out in order (the
    first pending one of each key is the only one tried); ``send`` sends one
    notice by id and records its outcome through ``retry`` and ``end``.
    Retries wait ``retry_delay(attempts, first=, factor=, most=)``; with
    ``tries``, a notice that failed that many times is given up."""

    def __init__(
        self,
        db: Engine,
        channel: str,
        *,
        key: Callable[[Notice], object],
        send: Callable[[int], None],
        first: float,
        factor: float,
        most: float | None = None,
        tries: int | None = None,
    ) -> None:
        self.db = db
        self.channel = channel
        self.key = key
        self.send = send
        self.first, self.factor, self.most, self.tries = first, factor, most, tries
        self._wake = threading.Event()

    # sending -------------------------------------------------------------------------------

    def wake(self) -> None:
        """A notice was written: the thread looks now rather than within a second."""
        self._wake.set()

    def run(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self._loop, args=(stop,), daemon=True, name=f"tell-{self.channel}")
        thread.start()
        return thread

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                sent = self.send_due()
            except Exception:  # noqa: BLE001  (the next round tries again)
                log.exception("sending %s notices failed", self.channel)
                sent = 0
            if not sent:
                self._wake.wait(1.0)
                self._wake.clear()

    def due(self) -> list[int]:
        """The first pending notice of each key, if its time has come."""
        now = utcnow()
        with session_scope(self.db) as session:
            pending = session.exec(
                select(Notice)
                .where(Notice.channel == self.channel, Notice.state == PENDING)
                .order_by(col(Notice.id))
            ).all()
            heads: dict[Any, Notice] = {}
            for notice in pending:
                heads.setdefault(self.key(notice), notice)
            return [n.id for n in heads.values() if n.id is not None and aware(n.next_at) <= now]

    def send_due(self) -> int:
        """Send what is due; how many were tried."""
        due = self.due()
        for notice_id in due:
            try:
                self.send(notice_id)
            except Exception as exc:  # noqa: BLE001  (one row that breaks the sender holds back only itself)
                log.exception("notice %s could not be sent", notice_id)
                self.defer(notice_id, f"{type(exc).__name__} (see paas's log)")
        return len(due)

    def defer(self, notice_id: int, error: str) -> None:
        """A notice whose sending broke: tried again in a minute, never at once."""
        try:
            with session_scope(self.db) as session:
                notice = session.get(Notice, notice_id)
                if notice is not None and notice.state == PENDING:
                    notice.next_at, notice.last_error = utcnow() + DEFER, error
                    session.add(notice)
        except Exception:  # noqa: BLE001  (the database itself is failing: the loop says so)
            log.exception("notice %s could not be put off", notice_id)

    # outcomes ------------------------------------------------------------------------------

    def retry(
        self, notice_id: int, *, error: str, wait: float | None = None, progress: dict[str, Any] | None = None
    ) -> str:
        """One more failed try: the notice waits ``wait`` seconds (when the
        other side said how long), else the channel's back-off; with
        ``progress``, what was done so far. Returns "" while it will be tried
        again, else why it was given up (``tries`` reached)."""
        with session_scope(self.db) as session:
            notice = session.get(Notice, notice_id)
            if notice is None:
                return ""
            notice.attempts += 1
            if progress is not None:
                notice.progress = dict(progress)
            if self.tries is not None and notice.attempts >= self.tries:
                notice.state, notice.sent_at = FAILED, utcnow()
                notice.last_error = f"not delivered after {notice.attempts} tries: {error}"[:MAX_ERROR]
                session.add(notice)
                return notice.last_error
            delay = wait or retry_delay(notice.attempts, first=self.first, factor=self.factor, most=self.most)
            notice.next_at, notice.last_error = utcnow() + timedelta(seconds=delay), error
            session.add(notice)
            return ""

    def end(
        self, notice_id: int, *, state: str, error: str = "", progress: dict[str, Any] | None = None
    ) -> None:
        """The last try: ``SENT``, or ``FAILED`` with why (not tried again)."""
        with session_scope(self.db) as session:
            notice = session.get(Notice, notice_id)
            if notice is None:
                return
            notice.attempts += 1
            notice.state, notice.last_error, notice.sent_at = state, error[:MAX_ERROR], utcnow()
            if progress is not None:
                notice.progress = dict(progress)
            session.add(notice)

    def save(self, notice_id: int, progress: dict[str, Any]) -> None:
        """What was done so far (GitHub: what it took is never sent again)."""
        with session_scope(self.db) as session:
            notice = session.get(Notice, notice_id)
            if notice is not None:
                notice.progress = dict(progress)
                session.add(notice)

    @staticmethod
    def refuse(session: Session, notice: Notice, error: str) -> None:
        """A notice that will never be sent (its row fails its check, its
        target or app is gone), in the sender's own transaction: no try counted."""
        notice.state, notice.last_error, notice.sent_at = FAILED, error, utcnow()
        session.add(notice)

    def prune(self, *, older_than: timedelta) -> int:
        """Forget notices sent or given up on long ago, but those of each app's
        live release (the next success marks its GitHub deployment inactive)."""
        cutoff = utcnow() - older_than
        with session_scope(self.db) as session:
            live_jobs = (
                select(Deployment.job_id)
                .join(App, col(App.current_deployment_id) == Deployment.id)
                .where(col(Deployment.job_id).is_not(None))  # a NULL would make NOT IN match nothing
            )
            old = session.exec(
                select(Notice).where(
                    Notice.channel == self.channel,
                    col(Notice.state) != PENDING,
                    col(Notice.created_at) < cutoff,
                    or_(col(Notice.job_id).is_(None), col(Notice.job_id).not_in(live_jobs)),
                )
            ).all()
            for notice in old:
                session.delete(notice)
        return len(old)


def not_written(exc: ValidationError) -> str:
    """Why a notice the agent was about to write cannot be: where its value
    fails its model, and why."""
    first = exc.errors()[0]
    return f"not written: {'.'.join(str(part) for part in first['loc']) or 'value'}: {first['msg']}"


def aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)
