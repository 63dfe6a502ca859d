"""The notification channel: a notice (paas/payloads.py's ``NotifyMessage``)
per target that hears an event, sent through Apprise (sender.py) by the
outbox's notification thread, in order per target; a test message sent at
once; each target's last outcome, which the API and UI show.

A target's URL is sealed to the agent's key pair for that target (and
whose events it hears), and opened as that only; the row of every notice is
checked again before it is sent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, or_
from sqlmodel import Session, col, select

from agent.tell.outbox import FAILED, SENT, Outbox, not_written
from agent.tell.say import Message, notify_test_message
from paas.crypto import DecryptError, Keyring, notify_url_purpose
from paas.db import session_scope
from paas.models import App, Notice, NotifyTarget, utcnow
from paas.notify_rules import EVENTS
from paas.notify_targets import target_owner
from paas.payloads import NotifyMessage
from paas.settings import Settings
from paas.trust import UntrustedRow, notify_message

__all__ = ["NOTIFY", "TEST_SENDS", "Deliver", "Notifications"]

log = logging.getLogger("paas.agent.tell")

NOTIFY = "notify"
# test sends at once (each a sender of about 30 MB for up to PAAS_NOTIFY_TIMEOUT); one more is
# refused, not queued. The outbox sends one at a time: at most 3 senders run together.
TEST_SENDS = 2

Deliver = Callable[[str, str, str, str], str]  # (url, title, body, kind) -> "" when it went, else why not


class Notifications:
    def __init__(self, settings: Settings, db: Engine, keyring: Keyring, deliver: Deliver) -> None:
        self.settings = settings
        self.db = db
        self.keyring = keyring
        self.deliver = deliver
        self.outbox = Outbox(
            db,
            NOTIFY,
            key=lambda notice: notice.target_id,
            send=self.send,
            first=settings.notify_retry_seconds,
            factor=4,
            tries=settings.notify_attempts,
        )
        self._testing = threading.BoundedSemaphore(TEST_SENDS)

    # writing -------------------------------------------------------------------------------

    def add(self, session: Session, app: App | None, message: Message) -> int:
        """A notice per target that hears ``message.event`` (the app's targets
        and every app's); how many. One that the message cannot be (a NUL in
        a log line, a kind that is none) is written failed, as the check
        before sending would."""
        event = message.event
        assert event in EVENTS, event
        try:
            payload = NotifyMessage(
                title=message.title[:250], body=message.body[:4000], type=message.kind
            ).model_dump()
            error = ""
        except ValidationError as exc:
            payload, error = {}, not_written(exc)
            log.error("notification of %s: %s", event, error)
        where: Any = col(NotifyTarget.app_id).is_(None)
        if app is not None:
            where = or_(where, col(NotifyTarget.app_id) == app.id)
        made = 0
        for target in session.exec(select(NotifyTarget).where(where)).all():
            events = target.events if isinstance(target.events, list) else []
            if events and event not in events:
                continue
            notice = Notice(
                channel=NOTIFY,
                app_id=app.id if app is not None else None,
                app_name=app.name if app is not None else "",
                target_id=target.id,
                event=event,
                payload=payload,
            )
            if error:
                notice.state, notice.last_error, notice.sent_at = FAILED, error, utcnow()
            session.add(notice)
            made += 1
        if made:
            self.outbox.wake()
        return made

    # sending -------------------------------------------------------------------------------

    def send(self, notice_id: int) -> None:
        """Send one notice to its target; tried again on the back-off, given
        up after ``PAAS_NOTIFY_ATTEMPTS`` tries, the outcome shown on the target."""
        with session_scope(self.db) as session:
            notice = session.get(Notice, notice_id)
            target = session.get(NotifyTarget, notice.target_id) if notice and notice.target_id else None
            if notice is None:
                return
            if target is None:
                Outbox.refuse(session, notice, "its target was removed")
                return
            try:
                message = notify_message(notice)
            except UntrustedRow as exc:
                Outbox.refuse(session, notice, str(exc))
                log.error("%s", exc)
                return
            sealed, target_id, whose = target.url, target.id, target_owner(session, target)
        error = self._deliver(sealed, target_id, whose, message.title, message.body, message.type)
        if not error:
            self.outbox.end(notice_id, state=SENT)
            self._record(target_id, "")
            return
        given_up = self.outbox.retry(notice_id, error=error)
        if given_up:
            self._record(target_id, given_up)
        log.warning("notification %s (%s) not delivered: %s", notice_id, message.title, error)

    def test(self, target_id: int) -> str:
        """Send a test message to one target now; "" when it went, else why
        not. With ``TEST_SENDS`` already under way, refused at once."""
        if not self._testing.acquire(blocking=False):
            return f"{TEST_SENDS} test notifications are being sent already: try again when they are done"
        try:
            return self._test(target_id)
        finally:
            self._testing.release()

    def _test(self, target_id: int) -> str:
        with session_scope(self.db) as session:
            target = session.get(NotifyTarget, target_id)
            if target is None:
                return f"no notification target {target_id}"
            url, whose = target.url, target_owner(session, target)
        message = notify_test_message(self.settings.control_host)
        error = self._deliver(url, target_id, whose, message.title, message.body, message.kind)
        self._record(target_id, error)
        return error

    def _deliver(
        self, sealed: str, target_id: int | None, whose: str | None, title: str, body: str, kind: str
    ) -> str:
        """Open a target's URL as that target's, and send; "" when it went, else why not."""
        try:
            url = self.keyring.decrypt(sealed, purpose=notify_url_purpose(target_id, whose))
        except DecryptError as exc:
            return f"cannot open the URL: {exc}"
        return self.deliver(url, title, body, kind)

    def _record(self, target_id: int | None, error: str) -> None:
        """A target's last outcome, as the API and the UI show it."""
        with session_scope(self.db) as session:
            target = session.get(NotifyTarget, target_id) if target_id else None
            if target is None:
                return
            if error:
                target.last_error, target.last_error_at = error[:1000], utcnow()
            else:
                target.last_sent_at, target.last_error, target.last_error_at = utcnow(), "", None
            session.add(target)
