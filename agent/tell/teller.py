"""Telling people how a deploy went: GitHub commit statuses and deployments,
and notifications through Apprise. The outbox.

Whatever happens that someone should hear of becomes ``Notice`` rows (one
per GitHub report, one per notification target), written in a short
transaction by whoever saw it: the job runner, the certificate check, the
Docker event watcher. Two threads send them, one for GitHub and one for
notifications, so a slow or failing GitHub never delays a deploy nor the
other channel. Notices of one app (GitHub) or one target (notifications) go
out in the order they were made; one that fails waits (GitHub's
``Retry-After`` and ``X-RateLimit-Reset``, else a doubling back-off) and
holds back those behind it, so statuses never arrive out of order.

Only the agent writes notices, and only it can open the GitHub token and
the notification URLs (sealed to its key pair, like secret env values).
Every value read from a row web can write (the repository, the
environment, a target's events) is checked again here before it is used.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, assert_never

from pydantic import ValidationError
from sqlalchemy import Engine, or_
from sqlmodel import Session, col, select

from agent import commands
from agent.deploylog import DeployLog, read_private_tail
from agent.releases import Releases
from agent.tell import say
from agent.tell.github import GitHubClient, GitHubTrouble
from agent.tell.notify_send import launch
from agent.tell.outbox import FAILED, SENT, Outbox, aware, not_written
from paas import queue
from paas.crypto import DecryptError, Keyring, github_token_purpose, notify_url_purpose
from paas.db import session_scope
from paas.errors import PaasError
from paas.models import App, Deployment, Job, JobState, Notice, NotifyTarget, utcnow
from paas.notify_rules import (
    EVENTS,
    check_github_environment,
    check_github_repo,
    check_notify_url,
    github_repo_from_url,
)
from paas.notify_targets import target_owner
from paas.payloads import (
    DeletePayload,
    DeploymentOp,
    DeploymentStatusOp,
    DeployPayload,
    GitHubOp,
    GitHubReport,
    InactivatePreviousOp,
    NotifyKind,
    NotifyMessage,
    ReleasePayload,
    StatusOp,
)
from paas.services import control_url, served_url
from paas.settings import Settings
from paas.trust import (
    UntrustedRow,
    check_app,
    check_github_app,
    check_job,
    check_version,
    github_report,
    job_payload,
    notify_message,
)

__all__ = ["Teller"]

log = logging.getLogger("paas.agent.tell")

GITHUB, NOTIFY = "github", "notify"
GITHUB_GIVE_UP = timedelta(hours=24)  # a report still failing after this goes, and those behind it
LOG_TAIL = 12  # lines of a failed deploy's log in its notification
LONGEST_WAIT = 3600  # seconds: GitHub's Retry-After or rate-limit reset is honoured up to this
# test sends at once (each a sender of about 30 MB for up to PAAS_NOTIFY_TIMEOUT); one more is
# refused, not queued. The outbox sends one at a time: at most 3 senders run together.
TEST_SENDS = 2


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
        self.keyring = keyring
        self._send_notification = send_notification or self._apprise
        # how the sender starts (as PAAS_NOTIFY_USER, in /, isolated): a wrong user stops the agent here
        self._sender = launch(settings, python=sys.executable, environ=os.environ, root=os.geteuid() == 0)
        if self._sender.warning:
            log.warning("%s", self._sender.warning)
        self._testing = threading.BoundedSemaphore(TEST_SENDS)
        self.outboxes = {
            GITHUB: Outbox(
                db,
                GITHUB,
                key=lambda notice: notice.app_id,
                send=self._send_github,
                first=1,
                factor=2,
                most=settings.github_retry_max_seconds,
            ),
            NOTIFY: Outbox(
                db,
                NOTIFY,
                key=lambda notice: notice.target_id,
                send=self._send_notice,
                first=settings.notify_retry_seconds,
                factor=4,
                tries=settings.notify_attempts,
            ),
        }

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
                self._github_queued(session, job, app)
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
                self._github_ended(session, job, app, None, say.Ended(job.state, job.error))
            if fresh or gone:
                self.outboxes[GITHUB].wake()

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
                if self._notice(session, job.id, "queued") is None:
                    self._github_queued(session, job, app)
                with self._reporting(session, app, job, dep, "started"):
                    self._github(session, app, job, dep, "started", say.started_report(facts, release, links))
            self._notify(session, app, say.started_message(app.name, facts, release, links))

    def finished(self, job: Job, dep_id: int | None, ended: say.Ended) -> None:
        """A job that ran has ended: GitHub hears how, and the notification
        of a success, a rollback or a failure goes out."""
        with session_scope(self.db) as session:
            app = session.get(App, job.app_id) if job.app_id else None
            dep = session.get(Deployment, dep_id) if dep_id else None
            if app is None or not _trusted(job, app, dep):
                return
            if app.github_token:
                self._github_ended(session, job, app, dep, ended)
            if dep is None:
                return
            failed = ended.state in say.FAILED and dep.job_id == job.id
            tail = self._log_tail(app.name, dep.version) if failed else ""
            facts, release, links = _job_facts(job), _release_facts(dep), self._links(session, app, dep)
            message = say.ended_message(app.name, facts, ended, release, links, log_tail=tail)
            if message is not None:
                self._notify(session, app, message)

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
            return self._notify(session, app, say.Message(event=event, title=title, body=body, kind=kind))

    # GitHub reports ------------------------------------------------------------------------

    def _github_queued(self, session: Session, job: Job, app: App) -> None:
        with self._reporting(session, app, job, None, "queued"):
            report = say.queued_report(
                _job_facts(job),
                self._links(session, app),
                branch=app.branch,
                base_commit=_base_commit(session, app, job),
            )
            self._github(session, app, job, None, "queued", report)

    def _github_ended(
        self, session: Session, job: Job, app: App, dep: Deployment | None, ended: say.Ended
    ) -> None:
        with self._reporting(session, app, job, dep, "ended"):
            release = _release_facts(dep) if dep is not None else None
            report = say.ended_report(_job_facts(job), ended, release, self._links(session, app, dep))
            self._github(session, app, job, dep, "ended", report)

    def _github(
        self,
        session: Session,
        app: App,
        job: Job,
        dep: Deployment | None,
        event: str,
        report: GitHubReport,
    ) -> None:
        session.add(
            Notice(
                channel=GITHUB,
                app_id=app.id,
                app_name=app.name,
                job_id=job.id,
                deployment_id=dep.id if dep is not None else None,
                event=event,
                payload=report.model_dump(),
            )
        )
        self.outboxes[GITHUB].wake()

    @contextmanager
    def _reporting(
        self, session: Session, app: App, job: Job, dep: Deployment | None, event: str
    ) -> Iterator[None]:
        """Writing one GitHub report. A value the report cannot carry (a
        release row changed outside paas, a URL of a form paas does not make)
        fails this report, as the check before sending would, and nothing else."""
        try:
            yield
        except ValidationError as exc:
            error = not_written(exc)
            session.add(
                Notice(
                    channel=GITHUB,
                    app_id=app.id,
                    app_name=app.name,
                    job_id=job.id,
                    deployment_id=dep.id if dep is not None else None,
                    event=event,
                    payload={},
                    state=FAILED,
                    last_error=error,
                    sent_at=utcnow(),
                )
            )
            log.error("GitHub report %s of job %s: %s", event, job.id, error)

    def _notice(self, session: Session, job_id: int | None, event: str) -> Notice | None:
        return session.exec(
            select(Notice).where(Notice.channel == GITHUB, Notice.job_id == job_id, Notice.event == event)
        ).first()

    # notifications -------------------------------------------------------------------------

    def _notify(self, session: Session, app: App | None, message: say.Message) -> int:
        """A notice per target that hears ``event`` (its app's and every app's);
        how many. One that the message cannot be (a NUL in a log line, a kind
        that is none) is written failed, as the check before sending would."""
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
            self.outboxes[NOTIFY].wake()
        return made

    def test_target(self, target_id: int) -> str:
        """Send a test message to one target now; "" when it went, else why
        not. With ``TEST_SENDS`` already under way, refused at once."""
        if not self._testing.acquire(blocking=False):
            return f"{TEST_SENDS} test notifications are being sent already: try again when they are done"
        try:
            return self._test_target(target_id)
        finally:
            self._testing.release()

    def _test_target(self, target_id: int) -> str:
        with session_scope(self.db) as session:
            target = session.get(NotifyTarget, target_id)
            if target is None:
                return f"no notification target {target_id}"
            url, whose = target.url, target_owner(session, target)
        message = say.notify_test_message(self.settings.control_host)
        try:
            error = self._send_notification(
                self.keyring.decrypt(url, purpose=notify_url_purpose(target_id, whose)),
                message.title,
                message.body,
                message.kind,
            )
        except DecryptError as exc:
            error = f"cannot open the URL: {exc}"
        self._record_target(target_id, error)
        return error

    def _record_target(self, target_id: int | None, error: str) -> None:
        with session_scope(self.db) as session:
            target = session.get(NotifyTarget, target_id) if target_id else None
            if target is None:
                return
            if error:
                target.last_error, target.last_error_at = error[:1000], utcnow()
            else:
                target.last_sent_at, target.last_error, target.last_error_at = utcnow(), "", None
            session.add(target)

    def _apprise(self, url: str, title: str, body: str, kind: str) -> str:
        """Send through Apprise in a process of its own (agent/tell/notify_send.py),
        started as ``launch`` planned it; the URL checked again first."""
        try:
            url = check_notify_url(url)
        except ValueError as exc:
            return f"not sent: {exc}"
        request = json.dumps({"url": url, "title": title, "body": body, "type": kind})
        sender = self._sender
        try:
            done = commands.capture(  # our own module, the URL on stdin
                list(sender.argv),
                input=request,
                timeout=self.settings.notify_timeout,
                cwd=sender.cwd,
                environ=sender.env,
                user=sender.user,
                group=sender.group,
                extra_groups=sender.extra_groups,
                umask=0o077,
            )
        except commands.TimedOut:
            return f"no answer within {self.settings.notify_timeout} s"
        try:
            answer = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return f"the sender exited {done.returncode} without an answer"
        return "" if answer.get("ok") else str(answer.get("error") or "not delivered")

    def prune(self, *, older_than: timedelta = timedelta(days=30)) -> int:
        """Forget notices sent or given up on long ago (``Outbox.prune``)."""
        return sum(outbox.prune(older_than=older_than) for outbox in self.outboxes.values())

    # sending -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> list[threading.Thread]:
        return [self.outboxes[channel].run(stop) for channel in (GITHUB, NOTIFY)]

    def send_due(self, channel: str) -> int:
        """Send the first pending notice of each app (GitHub) or target
        (notifications) whose time has come; returns how many were tried."""
        return self.outboxes[channel].send_due()

    def _send_notice(self, notice_id: int) -> None:
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
        try:
            error = self._send_notification(
                self.keyring.decrypt(sealed, purpose=notify_url_purpose(target_id, whose)),
                message.title,
                message.body,
                message.type,
            )
        except DecryptError as exc:
            error = f"cannot open the URL: {exc}"
        outbox = self.outboxes[NOTIFY]
        if not error:
            outbox.end(notice_id, state=SENT)
            self._record_target(target_id, "")
            return
        given_up = outbox.retry(notice_id, error=error)
        if given_up:
            self._record_target(target_id, given_up)
        log.warning("notification %s (%s) not delivered: %s", notice_id, message.title, error)

    def _send_github(self, notice_id: int) -> None:
        with session_scope(self.db) as session:
            notice = session.get(Notice, notice_id)
            if notice is None:
                return
            app = session.get(App, notice.app_id) if notice.app_id else None
            progress = dict(notice.progress or {}) if isinstance(notice.progress, dict) else {}
            try:
                if app is not None:
                    check_github_app(app)
                report = github_report(notice, app=app) if app is not None else None
                ops = report.ops if report is not None else []
                done = progress.get("done", 0)
                if type(done) is not int or not 0 <= done <= len(ops):
                    raise UntrustedRow(f"refusing GitHub report {notice.id}: its progress is not the agent's")
            except UntrustedRow as exc:
                Outbox.refuse(session, notice, str(exc))
                log.error("%s", exc)
                return
            deployment_id = self._github_deployment(session, notice)
            previous = self._previous_live(session, notice) if report is not None and report.live else None
            dep = session.exec(select(Deployment).where(Deployment.job_id == notice.job_id)).first()
            version = dep.version if dep is not None and type(dep.version) is int else None
            age = utcnow() - aware(notice.created_at)
        outbox = self.outboxes[GITHUB]
        if app is None:
            outbox.end(notice_id, state=FAILED, error="its app was deleted", progress=progress)
            return
        try:
            client = self._client(app)
        except (ValueError, DecryptError) as exc:
            outbox.end(notice_id, state=FAILED, error=f"not sent: {exc}", progress=progress)
            self._log(app.name, version, f"github: not told: {exc}")
            return
        done = int(progress.get("done", 0))
        errors: list[str] = list(progress.get("errors", []))
        for index in range(done, len(ops)):
            op = ops[index]
            try:
                outcome = self._github_op(
                    client, app, op, deployment_id or progress.get("deployment"), previous
                )
            except Exception as exc:  # noqa: BLE001  (never a tight loop: an unforeseen failure waits too)
                trouble = exc if isinstance(exc, GitHubTrouble) else _unforeseen(op, exc)
                if trouble.retry_after is None or age > GITHUB_GIVE_UP:
                    errors.append(trouble.reason)
                    progress.update(done=index + 1, errors=errors)
                    self._log(app.name, version, f"github: {trouble.reason}: not retried")
                    continue
                wait = min(trouble.retry_after, LONGEST_WAIT) if trouble.retry_after else None
                outbox.retry(notice_id, error=trouble.reason, wait=wait, progress=progress)
                log.warning("github (notice %s): %s", notice_id, trouble.reason)
                self._log(app.name, version, f"github: {trouble.reason}")
                return
            if isinstance(outcome, int):
                progress["deployment"] = outcome
                outcome = f"deployment {outcome} created"
            progress["done"] = index + 1
            outbox.save(notice_id, progress)  # what GitHub took is never sent again
            self._log(app.name, version, f"github: {outcome}")
        outbox.end(notice_id, state=FAILED if errors else SENT, error="; ".join(errors), progress=progress)

    def _github_op(
        self, client: GitHubClient, app: App, op: GitHubOp, deployment_id: Any, previous: Any
    ) -> str | int:
        if isinstance(op, StatusOp):
            sha = op.sha
            if len(sha) != 40 or any(c not in "0123456789abcdef" for c in sha):
                raise GitHubTrouble(f"commit status: {sha!r} is not a commit id")
            client.commit_status(
                sha,
                state=op.state,
                description=op.description,
                context=f"paas/{app.name}",
                target_url=op.target_url,
            )
            return f"commit status {op.state} on {sha[:12]} sent"
        if isinstance(op, DeploymentOp):
            environment = check_github_environment(app.github_environment)
            return client.create_deployment(
                ref=op.ref,
                environment=environment,
                description=op.description,
                payload=op.payload.model_dump(),
            )
        if isinstance(op, DeploymentStatusOp):
            if not isinstance(deployment_id, int):
                raise GitHubTrouble(f"deployment status {op.state}: no GitHub deployment was created for it")
            client.deployment_status(
                deployment_id,
                state=op.state,
                description=op.description,
                log_url=op.log_url,
                environment_url=op.environment_url or "",
            )
            return f"deployment {deployment_id} status {op.state} sent"
        if isinstance(op, InactivatePreviousOp):
            if not isinstance(previous, int) or previous == deployment_id:
                return "no earlier deployment to mark inactive"
            client.deployment_status(previous, state="inactive", description="replaced by a newer release")
            return f"deployment {previous} status inactive sent"
        assert_never(op)

    def _client(self, app: App) -> GitHubClient:
        repo = check_github_repo(app.github_repo) or github_repo_from_url(app.repo_url)
        if not repo:
            raise ValueError(
                "no GitHub repository: set one with `paas apps set APP --github-repo owner/name`"
            )
        return GitHubClient(
            base_url=self.settings.github_api_url,
            token=self.keyring.decrypt(app.github_token, purpose=github_token_purpose(app.name)),
            repo=repo,
            timeout=self.settings.github_timeout,
        )

    @staticmethod
    def _github_deployment(session: Session, notice: Notice) -> int | None:
        """The GitHub deployment made for this notice's job (by its ``queued`` report)."""
        first = session.exec(
            select(Notice).where(
                Notice.channel == GITHUB, Notice.job_id == notice.job_id, Notice.event == "queued"
            )
        ).first()
        found = (first.progress or {}).get("deployment") if first is not None else None
        return found if isinstance(found, int) else None

    def _previous_live(self, session: Session, notice: Notice) -> int | None:
        """The GitHub deployment that was live before this one: the newest
        earlier success report of the app, through its job's ``queued`` report."""
        earlier = session.exec(
            select(Notice)
            .where(
                Notice.channel == GITHUB,
                Notice.app_id == notice.app_id,
                Notice.event == "ended",
                Notice.state == SENT,
                col(Notice.id) < notice.id,
            )
            .order_by(col(Notice.id).desc())
        ).all()
        for row in earlier:
            if isinstance(row.payload, dict) and row.payload.get("live"):
                return self._github_deployment(session, row)
        return None

    def _log(self, app_name: str, version: int | None, line: str) -> None:
        """A report's outcome, in the release's log (never a token: GitHubClient scrubs)."""
        if version is None:
            return
        try:
            path = self.settings.release_log(app_name, version)
            if not path.is_file():
                return
            with DeployLog(path, under=self.settings.data_dir) as dlog:
                dlog.line(line)
        except (OSError, ValueError) as exc:
            log.warning("cannot add to the log of %s v%s: %s", app_name, version, exc)

    # URLs ----------------------------------------------------------------------------------

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


def _unforeseen(op: GitHubOp, exc: Exception) -> GitHubTrouble:
    """A failure the client did not sort (a bug, an answer of a shape nobody
    expected): retried on the usual back-off, never at once."""
    log.warning("github %s: unexpected %s", op.op, type(exc).__name__, exc_info=exc)
    return GitHubTrouble(f"{op.op}: {type(exc).__name__} (see paas's log)", 0)


def _job_facts(job: Job) -> say.JobFacts:
    """A job (checked: ``_trusted``) as it is told."""
    assert job.id is not None  # a row read from the database
    asked = job_payload(job)
    if isinstance(asked, DeletePayload):
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
