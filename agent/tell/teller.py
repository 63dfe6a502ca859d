"""The teller: what the rest of the agent calls when something happened
that someone should hear of. Whoever saw it (the job runner, the daemon's
claim loop, the certificate check, the Docker event watcher) calls
``scan``, ``started``, ``finished`` or ``event``; the teller reads the
rows, checks them again (web may have written them), asks say.py what to
say, and writes it as notices in the caller's short transaction: GitHub
reports (reports.py) and notifications (notifications.py). Two threads
send them (``run``), one per channel, so a slow or failing GitHub never
delays a deploy nor the other channel.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from agent.deploylog import read_private_tail
from agent.releases import Releases
from agent.tell import say
from agent.tell.notifications import NOTIFY, Notifications
from agent.tell.reports import GITHUB, Reports
from agent.tell.sender import Sender
from paas import queue
from paas.crypto import Keyring
from paas.db import session_scope
from paas.errors import PaasError
from paas.models import App, Deployment, Job, JobState, Notice, utcnow
from paas.payloads import DatabasePayload, DeletePayload, DeployPayload, NotifyKind, ReleasePayload
from paas.services import control_url, served_url
from paas.settings import Settings
from paas.trust import UntrustedRow, check_app, check_github_app, check_job, check_version, job_payload

__all__ = ["Teller"]

log = logging.getLogger("paas.agent.tell")

LOG_TAIL = 12  # lines of a failed deploy's log in its notification


class Teller:
    def __init__(
        self,
        settings: Settings,
        db: Engine,
        keyring: Keyring,
        *,
        send_notification: Callable[[str, str, str, str], str] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        # how the sender starts (as PAAS_NOTIFY_USER, in /, isolated): a wrong user stops the agent here
        self.sender = Sender(settings)
        self.reports = Reports(settings, db, keyring)
        self.notifications = Notifications(settings, db, keyring, send_notification or self.sender.send)

    # what happened -----------------------------------------------------------------------

    def scan(self) -> None:
        """A queued job of an app that reports to GitHub gets its ``queued``
        report; one that ended without running (superseded by a newer push,
        cancelled while queued) gets its end. Cheap: the agent calls it at
        every tick, before it claims."""
        with session_scope(self.db) as session:
            told = select(Notice.job_id).where(  # never a NULL: NOT IN would then match nothing
                Notice.channel == GITHUB, Notice.event == "queued", col(Notice.job_id).is_not(None)
            )
            fresh = session.exec(
                select(Job, App)
                .join(App, col(App.id) == Job.app_id)
                .where(
                    col(Job.state) == JobState.queued,
                    col(Job.kind).in_(queue.CANCELLABLE),
                    App.github_token != "",
                    col(Job.id).not_in(told),
                )
            ).all()
            fresh = [(job, app) for job, app in fresh if _trusted(job, app)]
            for job, app in fresh:
                self._queued(session, job, app)
            ended = select(Notice.job_id).where(
                Notice.channel == GITHUB, Notice.event == "ended", col(Notice.job_id).is_not(None)
            )
            since = utcnow() - timedelta(days=1)
            gone = session.exec(
                select(Job, App)
                .join(App, col(App.id) == Job.app_id)
                .where(
                    col(Job.state).in_((JobState.superseded, JobState.cancelled, JobState.failed)),
                    col(Job.started_at).is_(None),
                    col(Job.finished_at) > since,
                    col(Job.id).in_(told),
                    col(Job.id).not_in(ended),
                )
            ).all()
            gone = [(job, app) for job, app in gone if _trusted(job, app)]
            for job, app in gone:
                self._ended(session, job, app, None, say.Ended(job.state, job.error))

    def started(self, job: Job, dep_id: int) -> None:
        """A job began its release (vN exists): GitHub's deployment is in
        progress, and ``deploy.started`` goes out."""
        with session_scope(self.db) as session:
            app = session.get(App, job.app_id) if job.app_id else None
            dep = session.get(Deployment, dep_id)
            if app is None or dep is None or not _trusted(job, app, dep):
                return
            facts, release, links = _job_facts(job), _release_facts(dep), self._links(session, app, dep)
            if app.github_token:
                if not self.reports.has(session, job.id, "queued"):
                    self._queued(session, job, app)
                self.reports.add(
                    session, app, job, dep, "started", lambda: say.started_report(facts, release, links)
                )
            self.notifications.add(session, app, say.started_message(app.name, facts, release, links))

    def finished(self, job: Job, dep_id: int | None, ended: say.Ended) -> None:
        """A job that ran has ended: GitHub hears how, and the notification
        of a success, a rollback or a failure goes out."""
        with session_scope(self.db) as session:
            app = session.get(App, job.app_id) if job.app_id else None
            dep = session.get(Deployment, dep_id) if dep_id else None
            if app is None or not _trusted(job, app, dep):
                return
            if app.github_token:
                self._ended(session, job, app, dep, ended)
            if dep is None:
                return
            failed = ended.state in say.FAILED and dep.job_id == job.id
            tail = self._log_tail(app.name, dep.version) if failed else ""
            facts, release, links = _job_facts(job), _release_facts(dep), self._links(session, app, dep)
            message = say.ended_message(app.name, facts, ended, release, links, log_tail=tail)
            if message is not None:
                self.notifications.add(session, app, message)

    def event(
        self, event: str, *, app_name: str = "", title: str, body: str, kind: NotifyKind = "warning"
    ) -> int:
        """Anything else worth a notification (crash, certificate, disk, backup);
        returns how many targets will hear it."""
        with session_scope(self.db) as session:
            app = session.exec(select(App).where(App.name == app_name)).first() if app_name else None
            if app is not None:
                try:
                    check_app(app)
                except UntrustedRow as exc:
                    log.error("not telling %s of %s: %s", app_name, event, exc)
                    return 0
            return self.notifications.add(
                session, app, say.Message(event=event, title=title, body=body, kind=kind)
            )

    def test_target(self, target_id: int) -> str:
        """Send a test message to one target now; "" when it went, else why not."""
        return self.notifications.test(target_id)

    # the outbox ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> list[threading.Thread]:
        """The two sending threads, GitHub's and the notifications'."""
        return [self.reports.outbox.run(stop), self.notifications.outbox.run(stop)]

    def send_due(self, channel: str) -> int:
        """Send the first pending notice of each app (GitHub) or target
        (notifications) whose time has come; returns how many were tried."""
        return {GITHUB: self.reports.outbox, NOTIFY: self.notifications.outbox}[channel].send_due()

    def prune(self, *, older_than: timedelta = timedelta(days=30)) -> int:
        """Forget notices sent or given up on long ago (``Outbox.prune``)."""
        return sum(
            channel.outbox.prune(older_than=older_than) for channel in (self.reports, self.notifications)
        )

    # GitHub reports ------------------------------------------------------------------------

    def _queued(self, session: Session, job: Job, app: App) -> None:
        self.reports.add(
            session,
            app,
            job,
            None,
            "queued",
            lambda: say.queued_report(
                _job_facts(job),
                self._links(session, app),
                branch=app.branch,
                base_commit=_base_commit(session, app, job),
            ),
        )

    def _ended(self, session: Session, job: Job, app: App, dep: Deployment | None, ended: say.Ended) -> None:
        release = _release_facts(dep) if dep is not None else None
        self.reports.add(
            session,
            app,
            job,
            dep,
            "ended",
            lambda: say.ended_report(_job_facts(job), ended, release, self._links(session, app, dep)),
        )

    # what the rows say ---------------------------------------------------------------------

    def _links(self, session: Session, app: App, dep: Deployment | None = None) -> say.Links:
        control = control_url(session, self.settings)
        return say.Links(
            activity=f"{control}/apps/{app.name}/activity",
            release=f"{control}/apps/{app.name}/releases/{dep.version}" if dep is not None else "",
            app=served_url(session, self.settings, self.settings.app_hostname(app.name)),
        )

    def _log_tail(self, app_name: str, version: int) -> str:
        """The last lines of a release's log, for a failure's notification:
        read as root, so through no link and no ``..`` (agent/deploylog.py)."""
        try:
            path = self.settings.release_log(app_name, version)
            lines = read_private_tail(path, under=self.settings.data_dir, lines=LOG_TAIL)
        except (OSError, ValueError):
            return ""
        return "\n".join(lines)


def _trusted(job: Job, app: App, dep: Deployment | None = None) -> bool:
    """A job, its app and its release, as web checked them on input; a row
    changed outside paas is said in the log and told to nobody."""
    try:
        check_job(job)
        (check_github_app if app.github_token else check_app)(app)
        if job.app_name != app.name:
            raise UntrustedRow(f"refusing job {job.id}: it names {job.app_name!r}, its app is {app.name!r}")
        if dep is not None:
            check_version(dep.version, where=f"release {dep.id} of {app.name}")
            if dep.app_id != app.id:
                raise UntrustedRow(f"refusing release {dep.id}: it is not {app.name}'s")
    except UntrustedRow as exc:
        log.error("not telling anyone of job %s: %s", job.id, exc)
        return False
    return True


def _job_facts(job: Job) -> say.JobFacts:
    """A job (checked: ``_trusted``) as it is told."""
    assert job.id is not None  # a row read from the database
    asked = job_payload(job)
    if isinstance(asked, DeletePayload | DatabasePayload):
        return say.JobFacts(id=job.id, kind=job.kind)
    deploy = asked if isinstance(asked, DeployPayload) else DeployPayload()
    return say.JobFacts(
        id=job.id, kind=job.kind, trigger=asked.trigger, ref=deploy.ref or "", commit=deploy.commit
    )


def _release_facts(dep: Deployment) -> say.ReleaseFacts:
    took = (dep.finished_at - dep.created_at).total_seconds() if dep.finished_at else None
    return say.ReleaseFacts(
        version=dep.version,
        job_id=dep.job_id,
        commit=dep.commit,
        message=dep.commit_message,
        trigger=dep.trigger,
        by=dep.created_by,
        step=dep.step,
        error=dep.error,
        rollback_of=dep.rollback_of,
        seconds=took,
    )


def _base_commit(session: Session, app: App, job: Job) -> str:
    """The commit a release or rollback job brings back (what its GitHub deployment is of)."""
    try:
        asked = job_payload(job)
        if not isinstance(asked, ReleasePayload):
            return ""
        return Releases.base_release(session, app, asked.source_version).commit
    except PaasError:  # nothing to bring back: the job will fail and say so
        return ""
