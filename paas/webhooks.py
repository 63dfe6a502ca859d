"""Acting on a verified GitHub delivery (web/routes/hooks.py checks the
signature first): a ping, a push to the app's branch (deployed unless the
app is pinned, or the push is stale: a replay or an out-of-order delivery),
or anything else (recorded and ignored). Redeliveries change nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam
from sqlmodel import Session, select

from paas import services
from paas.github import PushDecision, decide_push
from paas.models import App, WebhookDelivery

__all__ = ["WebhookOutcome", "handle_github_event"]


_DELIVERY_BY_ID = select(WebhookDelivery).where(WebhookDelivery.delivery_id == bindparam("delivery_id"))


@dataclass(frozen=True)
class WebhookOutcome:
    status_code: int
    body: dict[str, Any]


def _stale_push(app: App, decision: PushDecision) -> str | None:
    """Why a signed push must not deploy: it is older than the newest one the
    app accepted (an out-of-order delivery, or a replay of an old one), or
    that very push again. The signature covers the body only, so a captured
    push could otherwise be resent under a fresh delivery id. A push in the
    same second with another commit still counts; a force-push to an older
    commit is a new push, newer by its pushed_at, and deploys."""
    newest, pushed = app.last_pushed_at, decision.pushed_at
    if newest is None or pushed is None:
        return None
    if pushed < newest:
        return (
            f"ignored: push of {decision.commit[:12]} is older than the newest accepted one "
            f"(pushed_at {pushed} < {newest}): a replay or an out-of-order delivery"
        )
    if pushed == newest and decision.commit == app.last_pushed_commit:
        return (
            f"ignored: push of {decision.commit[:12]} was accepted already (a replay under a new delivery id)"
        )
    return None


def handle_github_event(
    session: Session, *, app: App, event: str, delivery_id: str, payload: Any
) -> WebhookOutcome:
    """Act on a verified GitHub delivery: ping, push, or anything else.

    Raises ValueError for a push whose payload is malformed (the caller
    answers 400); a redelivery of an accepted delivery id changes nothing.
    """
    if delivery_id:
        seen = session.exec(_DELIVERY_BY_ID, params={"delivery_id": delivery_id}).first()
        if seen is not None:
            return WebhookOutcome(
                200, {"duplicate": True, "job_id": seen.job_id, "detail": "delivery already received"}
            )

    job_id: int | None = None
    if event == "ping":
        outcome = WebhookOutcome(200, {"ok": True, "detail": "pong"})
    elif event == "push":
        decision = decide_push(payload, branch=app.branch)
        stale = _stale_push(app, decision) if decision.deploy else None
        if decision.deploy and stale is None:
            app.last_pushed_at = decision.pushed_at
            app.last_pushed_commit = decision.commit
            session.add(app)
        if stale is not None:
            services.record_event(
                session, actor="github", action="push.ignored", app_name=app.name, detail=stale
            )
            outcome = WebhookOutcome(200, {"queued": False, "detail": stale})
        elif decision.deploy and app.pinned:
            app.pending_pushes += 1
            app.pending_commit = decision.commit[:64]
            session.add(app)
            outcome = WebhookOutcome(
                200,
                {
                    "queued": False,
                    "pinned": True,
                    "detail": f"{app.name} is pinned after a rollback: push recorded, not deployed "
                    f"({app.pending_pushes} waiting); `paas unpin {app.name}` or "
                    f"`paas deploy {app.name}` resumes",
                },
            )
        elif decision.deploy:
            job = services.request_deploy(
                session,
                app=app,
                actor=f"github:{decision.pusher}" if decision.pusher else "github",
                trigger="push",
                ref=decision.ref,
                commit=decision.commit,
                message=decision.message,
            )
            job_id = job.id
            outcome = WebhookOutcome(
                202, {"queued": True, "job_id": job.id, "commit": decision.commit, "detail": decision.reason}
            )
        else:
            outcome = WebhookOutcome(200, {"queued": False, "detail": decision.reason})
    else:
        outcome = WebhookOutcome(200, {"queued": False, "detail": f"ignored: {event!r} event"})

    if delivery_id:
        session.add(
            WebhookDelivery(
                delivery_id=delivery_id[:100],
                app_id=app.id,
                event=event[:50],
                outcome=str(outcome.body.get("detail", ""))[:300],
                job_id=job_id,
            )
        )
    return outcome
