"""The durable job queue, in the database.

- ``enqueue`` adds a job; a new deploy or rollback job for an app supersedes
  that app's deploy, release and rollback jobs still queued, so a burst of
  pushes deploys only the newest. A release (the live image with changed env) supersedes queued
  releases, and is not queued at all behind a queued deploy, which will
  pick up the same env.
- ``claim`` takes the oldest queued job whose app has no running job, and
  leases it to one owner. A partial unique index allows at most one running
  job per app, so two claimers can never both win, on SQLite or PostgreSQL.
- ``heartbeat`` extends the leases an owner holds; ``finish`` ends a job.
- ``recover_expired`` fails the jobs whose lease ran out (their agent died),
  so nothing stays "running" forever.

The agent polls for jobs; ``enqueue`` also marks its session (``JOB_QUEUED``)
so that whoever registered with ``paas.db.on_job_queued`` (web: wake the
agent over its socket) hears of the job as soon as it is committed.

Every function takes a session and leaves committing to the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from paas.db import JOB_QUEUED
from paas.models import App, Job, JobState, utcnow

if TYPE_CHECKING:
    from paas.payloads import JobPayload

__all__ = ["claim", "enqueue", "finish", "heartbeat", "recover_expired"]

DEPLOY = "deploy"
RELEASE = "release"  # the live image again: an env change or a restart
ROLLBACK = "rollback"  # an earlier release's image and env
DELETE = "delete"
DATABASE = "database"  # create, destroy or expose a database (app_id None, app_name its name)

CANCELLABLE = (DEPLOY, RELEASE, ROLLBACK)
# the newest intent wins over what is still queued; an env release queued
# behind a rollback stays (it applies on top of the rolled-back env)
_SUPERSEDES = {DEPLOY: CANCELLABLE, ROLLBACK: CANCELLABLE, RELEASE: (RELEASE,)}


def enqueue(
    session: Session, *, kind: str, app: App, payload: JobPayload | Mapping[str, Any] | None = None
) -> Job:
    """Queue a ``kind`` job for ``app``. ``payload`` is the kind's model
    (paas/payloads.py), stored as its ``model_dump()``; a mapping is stored
    as it is (the agent checks every row it reads, whoever wrote it)."""
    if kind == RELEASE:
        queued_deploy = session.exec(
            select(Job).where(
                col(Job.app_id) == app.id, col(Job.kind) == DEPLOY, col(Job.state) == JobState.queued
            )
        ).first()
        if queued_deploy is not None:
            return queued_deploy
    data = payload.model_dump() if isinstance(payload, BaseModel) else dict(payload or {})
    job = Job(kind=kind, app_id=app.id, app_name=app.name, payload=data)
    session.add(job)
    session.flush()
    session.info[JOB_QUEUED] = True
    if kind in _SUPERSEDES:
        session.execute(
            update(Job)
            .where(
                col(Job.app_id) == app.id,
                col(Job.kind).in_(_SUPERSEDES[kind]),
                col(Job.state) == JobState.queued,
                col(Job.id) != job.id,
            )
            .values(
                state=JobState.superseded,
                superseded_by=job.id,
                finished_at=utcnow(),
                error=f"superseded by job {job.id}",
            )
        )
    return job


def enqueue_database(session: Session, *, name: str, payload: BaseModel) -> Job:
    """Queue a job on database ``name``: no app's, so it waits for no app's job."""
    job = Job(kind=DATABASE, app_id=None, app_name=name, payload=payload.model_dump())
    session.add(job)
    session.flush()
    session.info[JOB_QUEUED] = True
    return job


def running_job(session: Session, app_id: int | None) -> int | None:
    """The id of the app's running job, if one runs (it owns the app's containers)."""
    return session.exec(
        select(Job.id).where(col(Job.app_id) == app_id, col(Job.state) == JobState.running)
    ).first()


def release_in_progress(session: Session, app_id: int | None) -> int | None:
    """The id of a deploy, release or rollback of the app that is queued or
    running, if there is one: its release goes live next."""
    return session.exec(
        select(Job.id).where(
            col(Job.app_id) == app_id,
            col(Job.kind).in_(CANCELLABLE),
            col(Job.state).in_((JobState.queued, JobState.running)),
        )
    ).first()


def claim(session: Session, *, owner: str, lease_seconds: float, now: datetime | None = None) -> Job | None:
    """Lease the oldest runnable job to ``owner``, or return None."""
    now = now or utcnow()
    busy_apps = select(Job.app_id).where(col(Job.state) == JobState.running, col(Job.app_id).is_not(None))
    candidates = session.exec(
        select(Job)
        .where(
            col(Job.state) == JobState.queued,
            or_(col(Job.app_id).is_(None), col(Job.app_id).not_in(busy_apps)),
        )
        .order_by(col(Job.id))
        .limit(20)
    ).all()
    for job in candidates:
        try:
            with session.begin_nested():
                result = session.execute(
                    update(Job)
                    .where(col(Job.id) == job.id, col(Job.state) == JobState.queued)
                    .values(
                        state=JobState.running,
                        lease_owner=owner,
                        lease_expires_at=now + timedelta(seconds=lease_seconds),
                        attempts=Job.attempts + 1,
                        started_at=now,
                    )
                )
        except IntegrityError:
            continue  # another claimer took a job of this app first
        if result.rowcount == 1:  # type: ignore[attr-defined]
            session.refresh(job)
            return job
    return None


def heartbeat(
    session: Session,
    *,
    owner: str,
    job_ids: Iterable[int],
    lease_seconds: float,
    now: datetime | None = None,
) -> int:
    """Extend the leases ``owner`` holds; returns how many were extended."""
    ids = list(job_ids)
    if not ids:
        return 0
    now = now or utcnow()
    result = session.execute(
        update(Job)
        .where(
            col(Job.id).in_(ids),
            col(Job.lease_owner) == owner,
            col(Job.state) == JobState.running,
        )
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def finish(
    session: Session,
    *,
    job_id: int,
    owner: str,
    state: JobState,
    error: str = "",
    deployment_id: int | None = None,
) -> bool:
    """End a job this owner holds. False if the lease was lost meanwhile."""
    values: dict[str, Any] = {"state": state, "error": error, "finished_at": utcnow()}
    if deployment_id is not None:
        values["deployment_id"] = deployment_id
    result = session.execute(
        update(Job)
        .where(
            col(Job.id) == job_id,
            col(Job.lease_owner) == owner,
            col(Job.state) == JobState.running,
        )
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def recover_expired(session: Session, *, now: datetime | None = None) -> list[Job]:
    """Fail every running job whose lease has expired, and return them."""
    now = now or utcnow()
    expired = session.exec(
        select(Job).where(col(Job.state) == JobState.running, col(Job.lease_expires_at) < now)
    ).all()
    for job in expired:
        job.state = JobState.failed
        job.finished_at = now
        job.error = (
            f"the agent ({job.lease_owner}) stopped while running this job; "
            "its lease expired, so it was failed"
        )
        session.add(job)
    session.flush()
    return list(expired)
