"""The JSON payloads of rows: what a job asks of the agent (one model per
job kind: deploy, release, rollback, delete), and what the agent's outbox
tells GitHub (a report: calls discriminated on ``op``) and notification
targets (a message).

Whoever writes a row builds its model and stores its ``model_dump()`` (the
columns stay JSON): web a job, the agent a notice. The agent reads each row
back through :mod:`paas.trust`, which validates it with the same model,
strictly: a value of another type (``"3"`` for 3, ``1`` for true) is
refused, and so is one the model would change, as every row web can write
is (DESIGN.md, "Threat model").
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from paas import queue
from paas.schemas import COMMIT_ID, FULL_COMMIT, MAX_ROW_ID, check_branch, check_database_version

__all__ = [
    "BY_KIND",
    "DatabasePayload",
    "DeletePayload",
    "DeployPayload",
    "DeploymentOp",
    "DeploymentState",
    "DeploymentStatusOp",
    "GitHubOp",
    "GitHubReport",
    "InactivatePreviousOp",
    "JobPayload",
    "JobRef",
    "NotifyKind",
    "NotifyMessage",
    "ReleasePayload",
    "RollbackPayload",
    "StatusOp",
    "StatusState",
    "Text",
    "no_nul",
]

MAX_TEXT = 10_000  # a commit message, who asked, why


def no_nul(value: str) -> str:
    if "\0" in value:
        raise ValueError("holds a NUL character")
    return value


def _branch_ref(value: str) -> str:
    """A branch, bare or after ``refs/heads/``, as :func:`check_branch` leaves it."""
    branch = value.removeprefix("refs/heads/")
    if check_branch(branch) != branch:
        raise ValueError("is not in its checked form")
    return value


def _database_version(value: str) -> str:
    if value and check_database_version(value) != value:
        raise ValueError("is not in its checked form")
    return value


def _commit_id(value: str) -> str:
    if value and not COMMIT_ID.fullmatch(value):
        raise ValueError("is not a commit id")
    return value


Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(no_nul)]
Ref = Annotated[str, AfterValidator(_branch_ref)]
Commit = Annotated[str, AfterValidator(_commit_id)]  # full or abbreviated; empty: the ref's head
Version = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]  # a release number
EnvVersion = Annotated[int, Field(ge=0, le=MAX_ROW_ID)]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DeployPayload(_Payload):
    """Fetch, build and release a commit: a push, ``paas deploy``, a restore."""

    ref: Ref | None = None  # refs/heads/<branch>; None: the app's branch
    commit: Commit = ""
    message: Text = ""
    trigger: Text = ""
    actor: Text = ""


class ReleasePayload(_Payload):
    """An image already built, released again: the live one with the app's
    env (an env change), or release v``source_version`` with its own env (a
    restart, a scale)."""

    trigger: Text = ""
    actor: Text = ""
    source_version: Version | None = None  # None: the live release
    run_release: bool = True  # the Procfile's release command (or prestart.sh) runs


class RollbackPayload(ReleasePayload):
    """Release v``source_version`` again, its image and its env."""

    env_version: EnvVersion | None = None  # the app's env version it sets back; None: that release's


class DeletePayload(_Payload):
    """Remove the app's containers, site, images and volumes: nothing more to say."""


class DatabasePayload(_Payload):
    """Act on a database (the job's ``app_name`` is the database's name):
    make it, remove it (its volume too with ``purge``), publish it on
    127.0.0.1:``port`` (None: publish nothing), or upgrade it to ``version``."""

    op: Literal["create", "destroy", "expose", "upgrade"]
    actor: Text = ""
    purge: bool = False
    previous: bool = False  # destroy: only the instance an upgrade left stopped
    port: Annotated[int, Field(ge=1024, le=65535)] | None = None
    version: Annotated[str, Field(max_length=40), AfterValidator(_database_version)] = ""  # upgrade: to


JobPayload = DeployPayload | ReleasePayload | RollbackPayload | DeletePayload | DatabasePayload

BY_KIND: dict[str, type[JobPayload]] = {
    queue.DEPLOY: DeployPayload,
    queue.RELEASE: ReleasePayload,
    queue.ROLLBACK: RollbackPayload,
    queue.DELETE: DeletePayload,
    queue.DATABASE: DatabasePayload,
}


# the outbox: what the agent tells GitHub and notification targets -------------------------

MAX_DESCRIPTION = 4000  # a GitHub description as stored (the client cuts it to GitHub's 140)
_URL = re.compile(
    r"https?://(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/%-]*)?"
)


def _url(value: str) -> str:
    """A control-plane or app URL as paas builds them: http(s), a host, a plain path."""
    if len(value) > 2000 or not _URL.fullmatch(value):
        raise ValueError("is not a URL paas makes")
    return value


def _full_commit(value: str) -> str:
    if not FULL_COMMIT.fullmatch(value):
        raise ValueError("is not a full commit id")
    return value


def _commit_or_branch(value: str) -> str:
    if not FULL_COMMIT.fullmatch(value) and check_branch(value) != value:
        raise ValueError("is not in its checked form")
    return value


Description = Annotated[str, Field(max_length=MAX_DESCRIPTION), AfterValidator(no_nul)]
Url = Annotated[str, AfterValidator(_url)]
StatusState = Literal["pending", "success", "failure", "error"]
DeploymentState = Literal["queued", "in_progress", "success", "failure", "error", "inactive"]
NotifyKind = Literal["info", "success", "warning", "failure"]


class StatusOp(_Payload):
    """A commit status on ``sha``."""

    op: Literal["status"] = "status"
    sha: Annotated[str, AfterValidator(_full_commit)]
    state: StatusState
    description: Description
    target_url: Url


class JobRef(_Payload):
    """A GitHub deployment's payload: the job it reports, nothing a workflow could run."""

    paas_job: int


class DeploymentOp(_Payload):
    """A GitHub deployment of ``ref`` (a commit id, or a branch when the commit is not known yet)."""

    op: Literal["deployment"] = "deployment"
    ref: Annotated[str, AfterValidator(_commit_or_branch)]
    description: Description
    payload: JobRef


class DeploymentStatusOp(_Payload):
    """A status of the deployment the job's ``queued`` report created."""

    op: Literal["deployment_status"] = "deployment_status"
    state: DeploymentState
    description: Description
    log_url: Url
    environment_url: Url | None = None


class InactivatePreviousOp(_Payload):
    """Mark the app's previous live deployment inactive."""

    op: Literal["inactivate_previous"] = "inactivate_previous"


GitHubOp = Annotated[
    StatusOp | DeploymentOp | DeploymentStatusOp | InactivatePreviousOp, Field(discriminator="op")
]


class GitHubReport(_Payload):
    """A GitHub notice's payload: the calls, in order, and whether the
    report says a release went live (the next one marks it inactive)."""

    ops: list[GitHubOp] = Field(max_length=10)
    live: bool = False


class NotifyMessage(_Payload):
    """A notification's payload, as Apprise sends it."""

    title: Annotated[str, Field(max_length=250), AfterValidator(no_nul)]
    body: Description
    type: NotifyKind
