"""What paas says of a deploy, pure: the GitHub calls a report makes when a
job is queued, when its release starts and when it ends, and the title and
body of each notification.

Plain values in (a job as ``JobFacts``, its release as ``ReleaseFacts``,
how it ended, the URLs), paas/payloads.py's models or a ``Message`` out;
tested by equality (tests/unit/test_say.py). The teller reads the rows,
asks here what to say and writes it as notices. A model that cannot carry
a value (a NUL in an error) raises pydantic's ``ValidationError`` here; the
teller then writes that report failed, as the check before sending would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from paas import queue
from paas.models import JobState
from paas.payloads import (
    DeploymentOp,
    DeploymentStatusOp,
    GitHubOp,
    GitHubReport,
    InactivatePreviousOp,
    JobRef,
    NotifyKind,
    StatusOp,
    StatusState,
)

__all__ = [
    "APP_FAULT_STEPS",
    "FAILED",
    "Ended",
    "JobFacts",
    "Links",
    "Message",
    "ReleaseFacts",
    "commit_status",
    "describe",
    "ended_message",
    "ended_report",
    "failure",
    "notify_test_message",
    "queued_report",
    "started_message",
    "started_report",
    "what",
]

APP_FAULT_STEPS = ("build", "release", "start", "health")  # a failure, not an error of paas
FAILED = (JobState.failed, JobState.cancelled)  # endings told with the step and the log's last lines


@dataclass(frozen=True)
class Ended:
    """How a job ended, as the teller needs it."""

    state: str  # done | failed | cancelled | superseded
    error: str = ""
    note: str = ""  # a job that ended well without a release: why


@dataclass(frozen=True)
class JobFacts:
    """A job as it is told: its kind (deploy, release, rollback), why it
    runs, and the ref and commit a deploy asks for."""

    id: int
    kind: str
    trigger: str = ""
    ref: str = ""  # refs/heads/<branch>; "": the app's branch
    commit: str = ""  # "": the branch's head, or (a release or rollback) the release it brings back


@dataclass(frozen=True)
class ReleaseFacts:
    """A release (a ``Deployment`` row) as it is told."""

    version: int
    job_id: int | None = None  # the job that made it
    commit: str = ""
    message: str = ""  # the commit's message
    trigger: str = ""
    by: str = ""  # who asked for it
    step: str = ""  # the step it is at, or failed or was cancelled at
    error: str = ""  # ``step: reason`` once it failed
    rollback_of: int | None = None
    seconds: float | None = None  # how long it took, once it finished


@dataclass(frozen=True)
class Links:
    """The URLs a report or a notification points to."""

    activity: str  # the app's Activity page in the control plane
    release: str = ""  # the release's page (its log); "" without a release
    app: str = ""  # the app itself, as nginx serves it


@dataclass(frozen=True)
class Message:
    """A notification: the event targets subscribe to (none for a test), what it says."""

    event: str
    title: str
    body: str
    kind: NotifyKind


def what(job: JobFacts) -> str:
    """``deploy (push)``, ``release (env)``, ``rollback``: what a job does, in a word or two."""
    if job.kind == queue.ROLLBACK:
        return "rollback"
    if job.kind == queue.RELEASE:
        return f"release ({job.trigger})" if job.trigger else "release"
    return f"deploy ({job.trigger})" if job.trigger else "deploy"


def describe(release: ReleaseFacts) -> str:
    """The commit, its message's first line and who asked: ``abc123def456 'Fix' (push by ann)``."""
    commit = release.commit[:12] if release.commit else "the branch head"
    message = release.message.strip().splitlines()[0][:100] if release.message.strip() else ""
    by = f" by {release.by}" if release.by else ""
    return f"{commit}{f' {message!r}' if message else ''} ({release.trigger or 'deploy'}{by})"


def failure(release: ReleaseFacts | None, ended: Ended) -> tuple[str, str]:
    """(step, reason) of a job that failed or was cancelled: the step its
    release's row names, and the row's error without it. A job that failed
    before it had a release, or a row that names no step, says both in its
    error as ``step: reason`` (else there is no step to name)."""
    if release is not None and release.error:
        if release.step:
            return release.step, release.error.removeprefix(f"{release.step}: ")
        error = release.error
    else:
        error = ended.error
    step, sep, reason = error.partition(": ")
    return (step, reason) if sep and step.isidentifier() else ("", error)


# GitHub reports ------------------------------------------------------------------------------


def commit_status(
    job: JobFacts, commit: str, state: StatusState, description: str, target_url: str
) -> list[GitHubOp]:
    """A commit status, for deploys of a known commit (a release of the
    same image would repeat what its deploy said)."""
    if job.kind != queue.DEPLOY or len(commit) != 40:
        return []
    return [StatusOp(sha=commit, state=state, description=description, target_url=target_url)]


def queued_report(job: JobFacts, links: Links, *, branch: str, base_commit: str = "") -> GitHubReport:
    """A job is queued: a pending status, a GitHub deployment of its commit
    (or, not known yet, its branch) and its first status. ``base_commit``:
    the commit a release or rollback brings back."""
    commit = job.commit or base_commit
    ref = job.ref.removeprefix("refs/heads/") or branch
    return GitHubReport(
        ops=[
            *commit_status(job, commit, "pending", "queued", links.activity),
            DeploymentOp(
                ref=commit or ref, description=f"paas: {what(job)}", payload=JobRef(paas_job=job.id)
            ),
            DeploymentStatusOp(state="queued", description="queued", log_url=links.activity),
        ]
    )


def started_report(job: JobFacts, release: ReleaseFacts, links: Links) -> GitHubReport:
    """A job began its release: its deployment is in progress."""
    return GitHubReport(
        ops=[
            *commit_status(job, release.commit, "pending", f"v{release.version}: deploying", links.release),
            DeploymentStatusOp(
                state="in_progress", description=f"v{release.version}: {what(job)}", log_url=links.release
            ),
        ]
    )


def ended_report(job: JobFacts, ended: Ended, release: ReleaseFacts | None, links: Links) -> GitHubReport:
    """A job ended: live (and the deployment it replaced inactive), nothing
    to release, superseded by a newer push, cancelled, or failed (a failure
    of the app's at build, release, start or health; else an error)."""
    url = links.release if release is not None else links.activity
    version = f"v{release.version}" if release is not None else "not deployed"
    commit = release.commit if release is not None else job.commit
    ops: list[GitHubOp]
    if ended.state == JobState.done and release is not None and release.job_id == job.id:
        live = f"v{release.version} is live"
        ops = [
            *commit_status(job, commit, "success", live, url),
            DeploymentStatusOp(state="success", description=live, log_url=url, environment_url=links.app),
            InactivatePreviousOp(),
        ]
    elif ended.state == JobState.done:  # nothing to release
        why = ended.note or "nothing to release"
        ops = [DeploymentStatusOp(state="inactive", description=why, log_url=url)]
    elif ended.state == JobState.superseded:
        why = "not deployed: a newer push superseded it"
        ops = [
            *commit_status(job, commit, "error", why, url),
            DeploymentStatusOp(state="inactive", description=why, log_url=url),
        ]
    else:
        step, reason = failure(release, ended)
        state: Literal["failure", "error"] = "failure" if step in APP_FAULT_STEPS else "error"
        if ended.state == JobState.cancelled:
            state, text = "error", f"{version} cancelled"
        else:
            text = f"{version} failed" + (f" at {step}: {reason}" if step else f": {reason}")
        ops = [
            *commit_status(job, commit, state, text, url),
            DeploymentStatusOp(state=state, description=text, log_url=url),
        ]
    return GitHubReport(ops=ops, live=ended.state == JobState.done)


# notifications -------------------------------------------------------------------------------


def started_message(app: str, job: JobFacts, release: ReleaseFacts, links: Links) -> Message:
    return Message(
        event="deploy.started",
        title=f"{app}: {what(job)} v{release.version}",
        body=f"{describe(release)}\n{links.release}",
        kind="info",
    )


def ended_message(
    app: str, job: JobFacts, ended: Ended, release: ReleaseFacts | None, links: Links, *, log_tail: str = ""
) -> Message | None:
    """A release went live (a deploy's or a rollback's), failed or was
    cancelled (``log_tail``: its log's last lines); None when the job made
    no release or was superseded."""
    if release is None or release.job_id != job.id:
        return None  # nothing was released (an env release that was not needed)
    if ended.state == JobState.done:
        rollback = job.kind == queue.ROLLBACK
        took = f" in {release.seconds:.1f} s" if release.seconds is not None else ""
        return Message(
            event="rollback" if rollback else "deploy.succeeded",
            title=(
                f"{app}: rolled back to v{release.rollback_of} (now v{release.version})"
                if rollback
                else f"{app}: v{release.version} is live"
            ),
            body=f"{describe(release)}{took}\n{links.app}\n{links.release}",
            kind="success",
        )
    if ended.state in FAILED:
        step, reason = failure(release, ended)
        at = f" at {step}" if step else ""
        word = "was cancelled" if ended.state == JobState.cancelled else "failed"
        return Message(
            event="deploy.failed",
            title=f"{app}: v{release.version} {word}{at}",
            body=f"{reason}\n{describe(release)}\n{links.release}" + (f"\n\n{log_tail}" if log_tail else ""),
            kind="failure",
        )
    return None


def notify_test_message(control_host: str) -> Message:
    """What ``paas notify test`` sends."""
    return Message(
        event="",
        title="paas: a test notification",
        body=f"This is a test from paas on {control_host}: notifications reach you here.",
        kind="info",
    )
