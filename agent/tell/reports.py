"""The GitHub channel: a report (a ``Notice`` holding the calls to make,
paas/payloads.py's ``GitHubReport``) written when a job is queued, starts
its release and ends, and sent through the client (github.py) by the
outbox's GitHub thread.

The calls of one report go out in order, and each one GitHub took is saved
on the row (``progress``) so that it is never made again; a report that
fails waits (GitHub's ``Retry-After`` and ``X-RateLimit-Reset``, else a
doubling back-off) and holds back the app's later reports, so statuses
never arrive out of order. Each outcome is a line of the release's log.
The token is the app's, sealed to the agent's key pair, opened as that
field only; every value of the row is checked again before it is used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, assert_never

from pydantic import ValidationError
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from agent.deploylog import DeployLog
from agent.tell.github import GitHubClient, GitHubTrouble
from agent.tell.outbox import FAILED, SENT, Outbox, aware, not_written
from paas.crypto import DecryptError, Keyring, github_token_purpose
from paas.db import session_scope
from paas.models import App, Deployment, Job, Notice, utcnow
from paas.notify_rules import check_github_environment, check_github_repo, github_repo_from_url
from paas.payloads import (
    DeploymentOp,
    DeploymentStatusOp,
    GitHubOp,
    GitHubReport,
    InactivatePreviousOp,
    StatusOp,
)
from paas.settings import Settings
from paas.trust import UntrustedRow, check_github_app, github_report

__all__ = ["GITHUB", "Reports"]

log = logging.getLogger("paas.agent.tell")

GITHUB = "github"
GIVE_UP = timedelta(hours=24)  # a report still failing after this goes, and those behind it
LONGEST_WAIT = 3600  # seconds: GitHub's Retry-After or rate-limit reset is honoured up to this


class Reports:
    def __init__(self, settings: Settings, db: Engine, keyring: Keyring) -> None:
        self.settings = settings
        self.db = db
        self.keyring = keyring
        self.outbox = Outbox(
            db,
            GITHUB,
            key=lambda notice: notice.app_id,
            send=self.send,
            first=1,
            factor=2,
            most=settings.github_retry_max_seconds,
        )

    # writing -------------------------------------------------------------------------------

    def add(
        self,
        session: Session,
        app: App,
        job: Job,
        dep: Deployment | None,
        event: str,
        report: Callable[[], GitHubReport],
    ) -> None:
        """One report of ``job`` (``event``: queued, started, ended), made by
        ``report()``. A value the report cannot carry (a release row changed
        outside paas, a URL of a form paas does not make) writes it failed,
        as the check before sending would, and nothing else."""
        notice = Notice(
            channel=GITHUB,
            app_id=app.id,
            app_name=app.name,
            job_id=job.id,
            deployment_id=dep.id if dep is not None else None,
            event=event,
        )
        try:
            notice.payload = report().model_dump()
        except ValidationError as exc:
            notice.state, notice.last_error, notice.sent_at = FAILED, not_written(exc), utcnow()
            log.error("GitHub report %s of job %s: %s", event, job.id, notice.last_error)
        session.add(notice)
        if notice.state != FAILED:
            self.outbox.wake()

    @staticmethod
    def has(session: Session, job_id: int | None, event: str) -> bool:
        """Whether ``job_id`` has its ``event`` report already."""
        found = session.exec(
            select(Notice.id).where(Notice.channel == GITHUB, Notice.job_id == job_id, Notice.event == event)
        ).first()
        return found is not None

    # sending -------------------------------------------------------------------------------

    def send(self, notice_id: int) -> None:
        """Send one report: its calls from the first GitHub has not taken, each
        saved as done once taken; a call GitHub refuses for good (or one still
        failing after a day) is said and skipped, any other waits its turn."""
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
            deployment_id = self._deployment(session, notice)
            previous = self._previous_live(session, notice) if report is not None and report.live else None
            dep = session.exec(select(Deployment).where(Deployment.job_id == notice.job_id)).first()
            version = dep.version if dep is not None and type(dep.version) is int else None
            age = utcnow() - aware(notice.created_at)
        if app is None:
            self.outbox.end(notice_id, state=FAILED, error="its app was deleted", progress=progress)
            return
        try:
            client = self.client(app)
        except (ValueError, DecryptError) as exc:
            self.outbox.end(notice_id, state=FAILED, error=f"not sent: {exc}", progress=progress)
            self._log(app.name, version, f"github: not told: {exc}")
            return
        done = int(progress.get("done", 0))
        errors: list[str] = list(progress.get("errors", []))
        for index in range(done, len(ops)):
            op = ops[index]
            try:
                outcome = self._call(client, app, op, deployment_id or progress.get("deployment"), previous)
            except Exception as exc:  # noqa: BLE001  (never a tight loop: an unforeseen failure waits too)
                trouble = exc if isinstance(exc, GitHubTrouble) else _unforeseen(op, exc)
                if trouble.retry_after is None or age > GIVE_UP:
                    errors.append(trouble.reason)
                    progress.update(done=index + 1, errors=errors)
                    self._log(app.name, version, f"github: {trouble.reason}: not retried")
                    continue
                wait = min(trouble.retry_after, LONGEST_WAIT) if trouble.retry_after else None
                self.outbox.retry(notice_id, error=trouble.reason, wait=wait, progress=progress)
                log.warning("github (notice %s): %s", notice_id, trouble.reason)
                self._log(app.name, version, f"github: {trouble.reason}")
                return
            if isinstance(outcome, int):
                progress["deployment"] = outcome
                outcome = f"deployment {outcome} created"
            progress["done"] = index + 1
            self.outbox.save(notice_id, progress)  # what GitHub took is never sent again
            self._log(app.name, version, f"github: {outcome}")
        self.outbox.end(
            notice_id, state=FAILED if errors else SENT, error="; ".join(errors), progress=progress
        )

    def _call(
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

    def client(self, app: App) -> GitHubClient:
        """A client for the app's repository, with its token opened as its own (never another field's)."""
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
    def _deployment(session: Session, notice: Notice) -> int | None:
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
                return self._deployment(session, row)
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


def _unforeseen(op: GitHubOp, exc: Exception) -> GitHubTrouble:
    """A failure the client did not sort (a bug, an answer of a shape nobody
    expected): retried on the usual back-off, never at once."""
    log.warning("github %s: unexpected %s", op.op, type(exc).__name__, exc_info=exc)
    return GitHubTrouble(f"{op.op}: {type(exc).__name__} (see paas's log)", 0)
