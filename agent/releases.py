"""Deployment rows, as the pipeline keeps them: a new version with its env
snapshot, the step it is at and each step's timing, what it built and
started, and how it ended. Every change is its own short transaction, so the
UI and the CLI see a deploy move while it runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Engine, func
from sqlmodel import Session, select

from paas.bindings import Endpoint
from paas.crypto import Keyring
from paas.db import hold_key_lock, session_scope
from paas.env_snapshots import OpenedEnv, bind_databases, open_snapshot, snapshot_env
from paas.errors import InvalidInput, StepFailed
from paas.models import App, Deployment, DeploymentStatus, Job, utcnow
from paas.payloads import DatabasePayload, DeletePayload, DeployPayload, RollbackPayload
from paas.services import find_release, live_release
from paas.trust import check_app, check_release, job_payload

__all__ = ["NewRelease", "Releases"]


class EndpointSource(Protocol):
    def endpoints(self, session: Session, names: Iterable[str]) -> dict[str, Endpoint]: ...


@dataclass(frozen=True)
class NewRelease:
    dep_id: int
    version: int
    app: App  # detached from its session: read freely, never written back
    env: OpenedEnv


class Releases:
    def __init__(self, db: Engine, keyring: Keyring, databases: EndpointSource | None = None) -> None:
        self.db = db
        self.keyring = keyring
        self.databases = databases  # the agent's (agent/databases.py); None: no binding resolves

    def create(self, job: Job) -> NewRelease:
        """vN for ``job``, with the app's env snapshot opened in the same
        transaction (so key rotation cannot slip between copying and opening).
        A release, restart, scale or rollback job takes its base release's
        image, commit and Procfile (and, but for an env release, its env)."""
        asked = job_payload(job)
        if isinstance(asked, DeletePayload | DatabasePayload):
            raise StepFailed("fetch", f"job {job.id} deletes {job.app_name!r}: it makes no release")
        with session_scope(self.db) as session:
            hold_key_lock(session)
            app = session.get(App, job.app_id) if job.app_id else None
            if app is None or app.id is None:
                raise StepFailed("fetch", f"app {job.app_name!r} no longer exists")
            check_app(app)
            latest = session.exec(
                select(func.max(Deployment.version)).where(Deployment.app_id == app.id)
            ).one()
            snapshot = snapshot_env(session, app)
            dep = Deployment(
                app_id=app.id,
                version=(latest or 0) + 1,
                trigger=asked.trigger,
                created_by=asked.actor,
                job_id=job.id,
                env=snapshot,
                env_version=app.env_version,
            )
            if isinstance(asked, DeployPayload):
                dep.ref, dep.commit, dep.commit_message = asked.ref or "", asked.commit, asked.message[:2000]
            else:
                base = self.base_release(session, app, asked.source_version)
                dep.ref, dep.commit, dep.commit_message = base.ref, base.commit, base.commit_message
                dep.image, dep.procfile = base.image, dict(base.procfile)
                if asked.source_version is not None:  # rollback or restart: that release's own env
                    snapshot = list(base.env)
                    dep.env = snapshot
                    brought = asked.env_version if isinstance(asked, RollbackPayload) else None
                    dep.env_version = base.env_version if brought is None else brought
                if isinstance(asked, RollbackPayload):
                    dep.rollback_of = base.version
            session.add(dep)
            session.flush()
            row = session.get(Job, job.id)
            if row is not None:
                row.deployment_id = dep.id
                session.add(row)
            assert dep.id is not None
            env = open_snapshot(snapshot, self.keyring, app=app.name)
            bound = env.bound()
            if bound:  # ${NAME.PART}: resolved here, the passwords opened here only
                if self.databases is None:
                    raise StepFailed("release", "this agent cannot resolve database bindings")
                try:
                    env = bind_databases(env, self.databases.endpoints(session, bound))
                except InvalidInput as exc:
                    raise StepFailed("release", str(exc)) from None
            session.expunge(app)
            return NewRelease(dep.id, dep.version, app, env)

    def env_release_needed(self, job: Job) -> tuple[bool, int | None, int | None]:
        """Whether an env release still has work: the live release (its id and
        version), unless none is live, and whether it lacks the app's current env."""
        with session_scope(self.db) as session:
            app = session.get(App, job.app_id) if job.app_id else None
            current = live_release(session, app) if app is not None else None
            if app is None or current is None:
                return False, None, None
            return current.env_version != app.env_version, current.id, current.version

    @staticmethod
    def base_release(session: Session, app: App, source: int | None) -> Deployment:
        """The release whose image (and, for a rollback, env) a release job
        reuses: v``source``, or the live one."""
        base = live_release(session, app) if source is None else find_release(session, app, source)
        if base is None or not base.image:
            what = f"v{source}" if source is not None else "a live release"
            raise StepFailed("release", f"app {app.name!r} has no {what} to reuse")
        return check_release(base, app=app.name)

    def version_of(self, app: App, version: int) -> Deployment | None:
        """Release v``version`` of ``app``, checked (paas/trust.py); None if it has none."""
        with session_scope(self.db) as session:
            dep = find_release(session, app, version)
            if dep is None:
                return None
            session.expunge(dep)
            return check_release(dep, app=app.name)

    def get(self, dep_id: int) -> Deployment:
        with session_scope(self.db) as session:
            dep = session.get(Deployment, dep_id)
            assert dep is not None
            session.expunge(dep)
            return dep

    def update(self, dep_id: int, **values: object) -> None:
        with session_scope(self.db) as session:
            dep = session.get(Deployment, dep_id)
            if dep is None:
                return
            for key, value in values.items():
                setattr(dep, key, value)
            session.add(dep)

    def record_timing(self, dep_id: int, step: str, seconds: float) -> None:
        with session_scope(self.db) as session:
            dep = session.get(Deployment, dep_id)
            if dep is not None:
                dep.timings = {**dep.timings, step: round(seconds, 3)}
                session.add(dep)

    def finish(self, dep_id: int, status: DeploymentStatus, *, error: str = "", step: str = "") -> None:
        """The release's end; a failed or cancelled one names the ``step`` it
        ended in (what its error starts with), which is then the row's step."""
        more = {"step": step} if step else {}
        self.update(dep_id, status=status, error=error, finished_at=utcnow(), **more)

    def make_current(self, app_name: str, dep_id: int) -> None:
        """The release is live: make it the app's current one and mark it
        succeeded, in one transaction (retire then counts it among the kept)."""
        with session_scope(self.db) as session:
            app = session.exec(select(App).where(App.name == app_name)).one()
            app.current_deployment_id = dep_id
            session.add(app)
            dep = session.get(Deployment, dep_id)
            if dep is not None:
                dep.status = DeploymentStatus.succeeded
                session.add(dep)

    def cancel_requested(self, job_id: int) -> bool:
        with session_scope(self.db) as session:
            row = session.get(Job, job_id)
            return bool(row is not None and row.cancel_requested)
