"""The service functions every door calls: API routes, CLI commands, the UI.

Each takes a session (and the acting identity), changes rows, records an
audit event and returns models; callers commit. Nothing here touches Docker,
nginx or a subprocess: the agent does that, from the jobs enqueued here.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from paas import queue
from paas.crypto import Keyring
from paas.db import hold_key_lock
from paas.env_snapshots import restore_snapshot
from paas.errors import Conflict, InvalidInput, found
from paas.models import (
    App,
    CertState,
    Deployment,
    DeploymentStatus,
    Domain,
    Event,
    Job,
    JobState,
    utcnow,
)
from paas.payloads import DeletePayload, DeployPayload, ReleasePayload, RollbackPayload
from paas.procfile import formation
from paas.schemas import (
    AppCreate,
    AppPublic,
    AppUpdate,
    DeploymentPublic,
    JobPublic,
    is_local_repo,
    shown_url,
)
from paas.settings import Settings

__all__ = [
    "RollbackRequested",
    "ScaleOutcome",
    "app_public",
    "check_active",
    "check_repo_allowed",
    "control_url",
    "create_app",
    "current_formation",
    "deployment_public",
    "find_release",
    "get_app",
    "get_job",
    "get_release",
    "job_public",
    "list_apps",
    "list_releases",
    "live_release",
    "record_event",
    "request_cancel",
    "request_delete",
    "request_deploy",
    "request_release",
    "request_restart",
    "request_rollback",
    "request_scale",
    "rotate_webhook_secret",
    "served_url",
    "unpin",
    "update_app",
    "webhook_url",
]

# audit ------------------------------------------------------------------------


def record_event(session: Session, *, actor: str, action: str, app_name: str = "", detail: str = "") -> None:
    session.add(Event(actor=actor, action=action, app_name=app_name, detail=detail[:2000]))


# apps -------------------------------------------------------------------------


_APP_BY_NAME = select(App).where(App.name == bindparam("name"))  # built once: looked up on every request


def get_app(session: Session, name: str) -> App:
    return found(session.exec(_APP_BY_NAME, params={"name": name}).first(), f"no app named {name!r}")


def rotate_webhook_secret(session: Session, *, app: App, actor: str, keyring: Keyring) -> str:
    """A new webhook secret for ``app``, in clear this once; deliveries signed
    with the old one are refused from now on."""
    hold_key_lock(session)
    secret = secrets.token_hex(32)
    app.webhook_secret = keyring.encrypt(secret)
    session.add(app)
    record_event(session, actor=actor, action="app.webhook_secret", app_name=app.name, detail="rotated")
    return secret


def list_apps(session: Session) -> list[App]:
    return list(session.exec(select(App).order_by(col(App.name))).all())


def create_app(
    session: Session, *, spec: AppCreate, actor: str, keyring: Keyring, settings: Settings
) -> tuple[App, str]:
    """Create the app; returns it with its webhook secret, in clear this once
    (the database holds it encrypted)."""
    check_repo_allowed(spec.repo_url, settings)
    if settings.app_hostname(spec.name) == settings.control_host:
        raise Conflict(
            f"{spec.name!r} is reserved: its hostname {settings.control_host} is the control plane's own"
        )
    hold_key_lock(session)
    if session.exec(select(App).where(App.name == spec.name)).first() is not None:
        raise Conflict(f"an app named {spec.name!r} already exists")
    secret = secrets.token_hex(32)
    app = App(**spec.model_dump(), webhook_secret=keyring.encrypt(secret))
    session.add(app)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"an app named {spec.name!r} already exists") from None
    record_event(
        session,
        actor=actor,
        action="app.create",
        app_name=app.name,
        detail=f"repo {shown_url(spec.repo_url)} branch {spec.branch}",
    )
    return app, secret


def check_active(app: App) -> None:
    """Conflict when the app is being deleted: nothing more is done to it."""
    if app.state != "active":
        raise Conflict(f"app {app.name!r} is being deleted")


def check_repo_allowed(url: str, settings: Settings) -> None:
    if is_local_repo(url) and not settings.allow_local_repos:
        raise InvalidInput(
            "repo_url: a repository on this server (a path or file://) needs PAAS_ALLOW_LOCAL_REPOS=true "
            "on the server; use an https:// or ssh URL"
        )


def update_app(session: Session, *, name: str, changes: AppUpdate, actor: str, settings: Settings) -> App:
    """Change settings; they apply from the next deploy."""
    app = get_app(session, name)
    given = changes.model_dump(exclude_unset=True)
    if "repo_url" in given:
        check_repo_allowed(given["repo_url"], settings)
    for key, value in given.items():
        setattr(app, key, value)
    session.add(app)
    if given:
        record_event(
            session,
            actor=actor,
            action="app.update",
            app_name=name,
            detail="changed " + ", ".join(sorted(given)),
        )
    return app


def request_delete(session: Session, *, name: str, actor: str) -> Job:
    """Mark the app for deletion; the agent removes its containers, site and images."""
    app = get_app(session, name)
    if app.state == "deleting":
        raise Conflict(f"app {name!r} is already being deleted")
    app.state = "deleting"
    session.add(app)
    job = queue.enqueue(session, kind=queue.DELETE, app=app, payload=DeletePayload())
    record_event(session, actor=actor, action="app.delete", app_name=name)
    return job


def request_deploy(
    session: Session,
    *,
    app: App,
    actor: str,
    trigger: str,
    ref: str | None = None,
    commit: str = "",
    message: str = "",
) -> Job:
    check_active(app)
    # a deploy by hand is the way back from a rollback; a rebuild for a build-scoped env change
    # ("env") builds the commit that is live, pinned or not
    if trigger not in ("push", "env") and app.pinned:
        unpin(session, app=app, actor=actor)
    payload = DeployPayload(
        ref=ref or f"refs/heads/{app.branch}", commit=commit, message=message, trigger=trigger, actor=actor
    )
    job = queue.enqueue(session, kind=queue.DEPLOY, app=app, payload=payload)
    record_event(
        session,
        actor=actor,
        action="deploy.request",
        app_name=app.name,
        detail=f"{trigger} {payload.ref} {commit[:12]}".strip(),
    )
    return job


def live_release(session: Session, app: App) -> Deployment | None:
    """The release the app serves now, if any."""
    return session.get(Deployment, app.current_deployment_id) if app.current_deployment_id else None


def find_release(session: Session, app: App, version: int) -> Deployment | None:
    """Release v``version`` of the app, if it exists."""
    return session.exec(
        select(Deployment).where(Deployment.app_id == app.id, Deployment.version == version)
    ).first()


def get_release(session: Session, app: App, version: int) -> Deployment:
    """Release v``version`` of the app; NotFound when it has none."""
    return found(find_release(session, app, version), f"{app.name} has no release v{version}")


def _live(session: Session, app: App) -> Deployment:
    check_active(app)
    current = live_release(session, app)
    if current is None:
        raise Conflict(f"app {app.name!r} has no live release yet: deploy it first")
    return current


def request_release(session: Session, *, app: App, actor: str, trigger: str, live: bool = True) -> Job:
    """A new release of the live image with the app's current env (no build).
    ``live=False``: nothing is live yet, but a deploy in progress will make a
    release live, and this one follows it (the agent skips it if that
    deploy fails, or already took the app's current env)."""
    if live:
        _live(session, app)
    else:
        check_active(app)
    payload = ReleasePayload(trigger=trigger, actor=actor)
    job = queue.enqueue(session, kind=queue.RELEASE, app=app, payload=payload)
    record_event(session, actor=actor, action="release.request", app_name=app.name, detail=trigger)
    return job


def request_restart(session: Session, *, app: App, actor: str) -> Job:
    """New containers for the live release (same image, same env), rotated in
    with the zero-downtime switch; staged env changes stay staged."""
    current = _live(session, app)
    payload = ReleasePayload(
        trigger="restart", actor=actor, source_version=current.version, run_release=False
    )
    job = queue.enqueue(session, kind=queue.RELEASE, app=app, payload=payload)
    record_event(session, actor=actor, action="app.restart", app_name=app.name, detail=f"v{current.version}")
    return job


@dataclass(frozen=True)
class ScaleOutcome:
    formation: dict[str, int]
    job: Job | None  # None: no live release yet; the counts apply at the first deploy


def request_scale(
    session: Session, *, app: App, counts: dict[str, int], actor: str, settings: Settings
) -> ScaleOutcome:
    """Set containers per process type (kept across deploys) and, with a live
    release, roll its containers out again in those numbers: same image, same
    env, no release command, the zero-downtime switch."""
    check_active(app)
    if not counts:
        raise InvalidInput("name at least one process type and count, such as web=2")
    limit, app_limit = settings.max_containers_per_process, settings.max_containers_per_app
    current = live_release(session, app)
    known = sorted(formation(current.procfile, {})) if current else []
    for process, count in counts.items():
        if process == "release":
            raise InvalidInput("release runs once per deploy, not as containers: it cannot be scaled")
        if current is not None and process not in known:
            raise InvalidInput(
                f"no process type {process!r} in the live release v{current.version}; "
                f"it has {', '.join(known)}"
            )
        if process == "web" and count < 1:
            raise InvalidInput("web needs at least 1 container (delete the app to take it offline)")
        if count > limit:
            raise InvalidInput(
                f"{process}={count} is more than the limit of {limit} containers per process type"
            )
    total = sum(formation(current.procfile if current else {}, {**app.scale, **counts}).values())
    if total > app_limit:
        raise InvalidInput(f"that makes {total} containers; an app may run at most {app_limit}")
    app.scale = {**app.scale, **counts}
    session.add(app)
    detail = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    record_event(session, actor=actor, action="app.scale", app_name=app.name, detail=detail)
    if current is None:
        return ScaleOutcome(formation({}, app.scale) | counts, None)
    payload = ReleasePayload(
        trigger=f"scale {detail}", actor=actor, source_version=current.version, run_release=False
    )
    job = queue.enqueue(session, kind=queue.RELEASE, app=app, payload=payload)
    return ScaleOutcome(formation(current.procfile, app.scale), job)


def current_formation(session: Session, *, app: App) -> dict[str, int]:
    """Containers per process type of the live release (as `paas scale` set them)."""
    current = live_release(session, app)
    return formation(current.procfile if current else {}, app.scale)


@dataclass(frozen=True)
class RollbackRequested:
    """What a rollback request queued: the job, the release it brings back, and what to warn about."""

    job: Job
    target: Deployment
    warnings: list[str]


def request_rollback(
    session: Session, *, app: App, actor: str, to: int | None = None, run_release: bool = False
) -> RollbackRequested:
    """Bring back release ``to`` (default: the newest successful one before
    the live one) as a new release: its image and its env, no build.

    The app's env vars are set back to that release's at once (ciphertexts
    copied as they are), and the app is pinned so that pushes wait.
    """
    hold_key_lock(session)
    current = _live(session, app)
    succeeded = select(Deployment).where(
        Deployment.app_id == app.id, Deployment.status == DeploymentStatus.succeeded
    )
    if to is None:
        target = session.exec(
            succeeded.where(Deployment.version < current.version).order_by(col(Deployment.version).desc())
        ).first()
        if target is None:
            raise Conflict(f"{app.name} has no successful release before v{current.version} to roll back to")
    else:
        target = get_release(session, app, to)
        if target.status != DeploymentStatus.succeeded:
            raise Conflict(
                f"v{to} of {app.name} never went live ({target.status}): only live releases come back"
            )
        if target.id == current.id:
            raise Conflict(f"v{to} is already live")
    if target.image_pruned or not target.image:
        raise Conflict(
            f"the image of v{target.version} was removed by retention (PAAS_KEEP_RELEASES); rebuild "
            f"its commit with `paas deploy {app.name} --commit {target.commit[:12]}`"
        )
    restore_snapshot(session, app, target.env, actor=f"{actor} (rollback to v{target.version})")
    app.pinned = True
    session.add(app)
    payload = RollbackPayload(
        trigger=f"rollback of v{target.version}",
        actor=actor,
        source_version=target.version,
        run_release=run_release,
        env_version=app.env_version,  # the rolled-back env is the app's env now
    )
    job = queue.enqueue(session, kind=queue.ROLLBACK, app=app, payload=payload)
    record_event(
        session,
        actor=actor,
        action="app.rollback",
        app_name=app.name,
        detail=f"v{current.version} -> v{target.version} (code and env); pinned",
    )
    warnings = ["database migrations are not undone: the old code runs against today's schema"]
    if not run_release:
        warnings.append("the release command did not run (pass --run-release to run it)")
    return RollbackRequested(job=job, target=target, warnings=warnings)


def unpin(session: Session, *, app: App, actor: str) -> App:
    """Let pushes deploy again (the waiting ones are not replayed: deploy to catch up)."""
    if not app.pinned:
        raise Conflict(f"{app.name} is not pinned")
    waiting = app.pending_pushes
    app.pinned, app.pending_pushes, app.pending_commit = False, 0, ""
    session.add(app)
    record_event(
        session, actor=actor, action="app.unpin", app_name=app.name, detail=f"{waiting} push(es) were waiting"
    )
    return app


def request_cancel(session: Session, *, app: App, actor: str) -> Job:
    """Cancel the app's queued or running deploy, release or rollback. A
    running one stops within seconds unless it has already switched nginx."""
    job = session.exec(
        select(Job)
        .where(
            Job.app_id == app.id,
            col(Job.kind).in_(queue.CANCELLABLE),
            col(Job.state).in_((JobState.running, JobState.queued)),
        )
        .order_by(col(Job.state) == JobState.queued, col(Job.id))  # the running one first
    ).first()
    if job is None:
        raise Conflict(f"{app.name} has no deploy running or queued")
    if job.state == JobState.queued:
        job.state, job.finished_at, job.error = JobState.cancelled, utcnow(), f"cancelled by {actor}"
    else:
        job.cancel_requested = True
    session.add(job)
    record_event(session, actor=actor, action="deploy.cancel", app_name=app.name, detail=f"job {job.id}")
    return job


def list_releases(session: Session, *, app: App, limit: int = 100) -> list[Deployment]:
    return list(
        session.exec(
            select(Deployment)
            .where(Deployment.app_id == app.id)
            .order_by(col(Deployment.version).desc())
            .limit(limit)
        ).all()
    )


def get_job(session: Session, job_id: int) -> Job:
    return found(session.get(Job, job_id), f"no job {job_id}")


# shaping answers ----------------------------------------------------------------


def app_public(session: Session, *, app: App, settings: Settings) -> AppPublic:
    current = live_release(session, app)
    return AppPublic.model_validate(app).model_copy(
        update={
            "url": served_url(session, settings, settings.app_hostname(app.name)),
            "webhook_url": webhook_url(session, settings, app),
            "current_version": current.version if current else None,
            "current_commit": current.commit if current else None,
            "env_staged": current is not None and current.env_version != app.env_version,
        }
    )


def webhook_url(session: Session, settings: Settings, app: App) -> str:
    """The Payload URL to give GitHub: https:// once the control plane's certificate is served."""
    return f"{control_url(session, settings)}/hooks/github/{app.name}"


def served_url(session: Session, settings: Settings, hostname: str) -> str:
    """How nginx serves ``hostname``: https:// once its certificate is issued
    (the agent switches HTTPS on as it records it), else http://; with the
    port when it is not the scheme's own."""
    state = session.exec(select(Domain.cert_state).where(Domain.hostname == hostname)).first()
    if state == CertState.issued:
        port = "" if settings.https_port == 443 else f":{settings.https_port}"
        return f"https://{hostname}{port}"
    port = "" if settings.http_port == 80 else f":{settings.http_port}"
    return f"http://{hostname}{port}"


def control_url(session: Session, settings: Settings) -> str:
    """The control plane's base URL: PAAS_PUBLIC_URL if it is https://, else
    https://<host> as soon as the control plane has its certificate, else
    PAAS_PUBLIC_URL or http://<host>."""
    if settings.public_url.startswith("https://"):
        return settings.public_url
    served = served_url(session, settings, settings.control_host)
    if served.startswith("https://") or not settings.public_url:
        return served
    return settings.public_url


def deployment_public(dep: Deployment) -> DeploymentPublic:
    duration = (dep.finished_at - dep.created_at).total_seconds() if dep.finished_at else None
    return DeploymentPublic.model_validate(dep).model_copy(update={"duration": duration})


def job_public(session: Session, job: Job) -> JobPublic:
    """The job, with its release's version and whether that release is live yet."""
    dep = session.get(Deployment, job.deployment_id) if job.deployment_id else None
    live = dep is not None and dep.status == DeploymentStatus.succeeded
    return JobPublic.model_validate(job).model_copy(
        update={"version": dep.version if dep else None, "live": live}
    )
