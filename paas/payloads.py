"""What a job asks of the agent: one model per job kind (deploy, release,
rollback, delete).

Web builds a job's model and stores its ``model_dump()`` (the column stays
JSON). The agent reads the row back through :func:`paas.trust.job_payload`,
which validates it with the same model, strictly: a value of another type
(``"3"`` for 3, ``1`` for true) is refused, and so is one the model would
change, as every row web can write is (DESIGN.md, "Threat model").
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from paas import queue
from paas.schemas import COMMIT_ID, MAX_ROW_ID, check_branch

__all__ = [
    "BY_KIND",
    "DeletePayload",
    "DeployPayload",
    "JobPayload",
    "ReleasePayload",
    "RollbackPayload",
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


JobPayload = DeployPayload | ReleasePayload | RollbackPayload | DeletePayload

BY_KIND: dict[str, type[JobPayload]] = {
    queue.DEPLOY: DeployPayload,
    queue.RELEASE: ReleasePayload,
    queue.ROLLBACK: RollbackPayload,
    queue.DELETE: DeletePayload,
}
