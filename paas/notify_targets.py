"""Where paas tells people, as the API and the UI keep it: an app's GitHub
reporting (the token sealed to the agent's key pair, write-only) and
notification targets (URLs sealed, listed masked), and what the outbox
says of each (the agent writes it: agent/tell/). The service functions
behind web/routes/notify.py and web/pages/app_settings.py; the checks they
apply are paas/notify_rules.py.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from paas.crypto import Keyring, github_token_purpose, notify_url_purpose
from paas.errors import InvalidInput, NotFound
from paas.models import App, Notice, NotifyTarget
from paas.notify_rules import github_repo_from_url, mask_url
from paas.schemas import GitHubPublic, GitHubUpdate, NotifyTargetCreate, NotifyTargetPublic
from paas.services import record_event

__all__ = [
    "add_target",
    "get_target",
    "github_public",
    "github_told",
    "list_targets",
    "remove_target",
    "set_github",
    "target_owner",
]


def github_told(session: Session, job_ids: Iterable[int]) -> dict[int, str]:
    """Per job: how GitHub was told (the UI's Activity): sent, waiting (why), failed (why)."""
    ids = [i for i in job_ids if i is not None]
    if not ids:
        return {}
    rows = session.exec(
        select(Notice).where(Notice.channel == "github", col(Notice.job_id).in_(ids)).order_by(col(Notice.id))
    ).all()
    told: dict[int, str] = {}
    rank = {"told": 0, "not told": 1, "retrying": 2, "sending": 2}  # the worst of a job's reports shows
    for row in rows:
        assert row.job_id is not None
        if row.state == "sent":
            said = "told"
        elif row.state == "pending":
            said = f"retrying: {row.last_error}" if row.last_error else "sending"
        else:
            said = f"not told: {row.last_error}"
        before = told.get(row.job_id)
        if before is None or rank[said.split(":")[0]] >= rank[before.split(":")[0]]:
            told[row.job_id] = said
    return told


def github_public(session: Session, app: App) -> GitHubPublic:
    last = session.exec(
        select(Notice)
        .where(Notice.channel == "github", Notice.app_id == app.id)
        .order_by(col(Notice.id).desc())
    ).first()
    outcome = ""
    if last is not None:
        outcome = {"sent": "told GitHub", "pending": "waiting to tell GitHub"}.get(
            last.state, "GitHub was not told"
        )
        outcome += f" ({last.event})" + (f": {last.last_error}" if last.last_error else "")
    return GitHubPublic(
        token_set=bool(app.github_token),
        repo=app.github_repo or github_repo_from_url(app.repo_url),
        repo_set=app.github_repo,
        environment=app.github_environment,
        last_outcome=outcome,
        last_at=(last.sent_at or last.created_at) if last is not None else None,
    )


def set_github(session: Session, *, app: App, change: GitHubUpdate, actor: str, keyring: Keyring) -> App:
    """Store what was given; the token sealed to the agent's key pair (web cannot open it again)."""
    given = change.model_dump(exclude_unset=True, exclude_none=True)
    if not given:
        raise InvalidInput("nothing to change: give a token, a repository or an environment")
    said = []
    if "token" in given:
        sealed_for = github_token_purpose(app.name)
        token = given["token"]
        app.github_token = keyring.encrypt(token, secret=True, purpose=sealed_for) if token else ""
        said.append("set the GitHub token" if given["token"] else "removed the GitHub token")
    if "repo" in given:
        app.github_repo = given["repo"]
        said.append(f"GitHub repository {given['repo'] or '(from the repo URL)'}")
    if "environment" in given:
        app.github_environment = given["environment"]
        said.append(f"GitHub environment {given['environment']}")
    if app.github_token and not (app.github_repo or github_repo_from_url(app.repo_url)):
        raise InvalidInput(
            f"{app.repo_url!r} is not a GitHub URL: say which repository with --github-repo owner/name"
        )
    session.add(app)
    record_event(session, actor=actor, action="app.github", app_name=app.name, detail="; ".join(said))
    return app


def _target_public(session: Session, target: NotifyTarget, names: dict[int, str]) -> NotifyTargetPublic:
    waiting = session.exec(
        select(func.count())
        .select_from(Notice)
        .where(Notice.target_id == target.id, Notice.state == "pending")
    ).one()
    return NotifyTargetPublic(
        id=target.id or 0,
        app=names.get(target.app_id) if target.app_id else None,
        url=target.masked,
        events=list(target.events or []),
        created_at=target.created_at,
        last_sent_at=target.last_sent_at,
        last_error=target.last_error,
        last_error_at=target.last_error_at,
        waiting=int(waiting),
    )


def list_targets(session: Session, *, app: App | None = None) -> list[NotifyTargetPublic]:
    query = select(NotifyTarget).order_by(col(NotifyTarget.id))
    if app is not None:
        query = query.where(or_(col(NotifyTarget.app_id).is_(None), col(NotifyTarget.app_id) == app.id))
    names = {a.id: a.name for a in session.exec(select(App)).all() if a.id is not None}
    return [_target_public(session, t, names) for t in session.exec(query).all()]


def add_target(
    session: Session, *, spec: NotifyTargetCreate, app: App | None, actor: str, keyring: Keyring
) -> NotifyTargetPublic:
    target = NotifyTarget(
        app_id=app.id if app is not None else None,
        url="",  # sealed below, for this target (its id) once it has one
        masked=mask_url(spec.url),
        events=spec.events,
        created_by=actor,
    )
    session.add(target)
    session.flush()
    assert target.id is not None
    purpose = notify_url_purpose(target.id, app.name if app is not None else None)
    target.url = keyring.encrypt(spec.url, secret=True, purpose=purpose)
    session.add(target)
    record_event(
        session,
        actor=actor,
        action="notify.add",
        app_name=app.name if app is not None else "",
        detail=f"target {target.id} {target.masked}: {', '.join(spec.events) or 'every event'}",
    )
    names = {app.id: app.name} if app is not None and app.id is not None else {}
    return _target_public(session, target, names)


def target_owner(session: Session, target: NotifyTarget) -> str | None:
    """Whose events ``target`` hears, as its URL's purpose names it
    (``notify_url_purpose``): the app's name, None for every app's, "" when
    its app is gone (a purpose nothing was sealed for)."""
    if target.app_id is None:
        return None
    app = session.get(App, target.app_id)
    return app.name if app is not None else ""


def get_target(session: Session, target_id: int) -> NotifyTarget:
    target = session.get(NotifyTarget, target_id)
    if target is None:
        raise NotFound(f"no notification target {target_id}")
    return target


def remove_target(session: Session, *, target_id: int, actor: str) -> None:
    target = get_target(session, target_id)
    for notice in session.exec(select(Notice).where(Notice.target_id == target_id)).all():
        session.delete(notice)
    session.delete(target)
    record_event(session, actor=actor, action="notify.remove", detail=f"target {target_id} {target.masked}")
