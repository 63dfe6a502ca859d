"""The exception tree. Every expected failure is one of these, with a message
fit to show a person; the CLI turns them into one line and an exit code, the
API into a status code and a JSON body.

PaasError
├── SettingsError        a PAAS_ variable is missing or invalid
├── NotFound             an app, deployment or job does not exist
├── Conflict             the name is taken, or the state forbids it
├── Unavailable          a part paas needs (the agent, the engine) does not answer
├── InvalidInput         bad input from a user; nothing was changed
└── StepFailed           a deploy step failed (carries the step name)

The agent's door modules raise their own, all PaasErrors: EngineError
(agent/docker_engine.py), NginxError (agent/nginx.py), SourceError
(agent/source.py), Unhealthy (agent/health.py) and Cancelled
(agent/steps.py); a step that meets one fails as StepFailed.

Every PaasError has a ``kind`` (:class:`ErrorKind`, ``other`` unless said):
the door that caught the underlying error (an errno, the engine's status,
the tool's own words) sets it there, once, and whoever handles the error
reads the kind, never the message.
"""

from __future__ import annotations

import enum
import errno
import os
from typing import TypeVar

__all__ = [
    "Conflict",
    "ErrorKind",
    "InvalidInput",
    "NotFound",
    "PaasError",
    "SettingsError",
    "StepFailed",
    "Unavailable",
    "found",
    "says_disk_full",
]


class ErrorKind(enum.StrEnum):
    """What went wrong, as the door that met it saw it."""

    disk_full = "disk_full"  # no space (or quota) left where it writes
    not_found = "not_found"  # no such image, container or commit
    timeout = "timeout"  # it took longer than it may
    refused = "refused"  # the other side is not there or refused the connection
    conflict = "conflict"  # the name is taken, or the thing is in use
    port_taken = "port_taken"  # the host port is bound already
    cancelled = "cancelled"  # stopped on request
    other = "other"


_DISK_FULL_WORDS = tuple(os.strerror(code).lower() for code in (errno.ENOSPC, errno.EDQUOT))


def says_disk_full(said: str) -> bool:
    """Whether a tool's message (git's, the engine's, nginx's) reports ENOSPC
    or EDQUOT in the system's words: for its door, which then raises its
    error with ``kind=ErrorKind.disk_full``."""
    lowered = said.lower()
    return any(words in lowered for words in _DISK_FULL_WORDS)


class PaasError(Exception):
    """Base of every error paas raises on purpose."""

    status_code = 500
    kind = ErrorKind.other

    def __init__(self, *args: object, kind: ErrorKind | None = None) -> None:
        super().__init__(*args)
        if kind is not None:
            self.kind = kind


class SettingsError(PaasError):
    status_code = 500


class NotFound(PaasError):
    status_code = 404


T = TypeVar("T")


def found(row: T | None, missing: str) -> T:
    """``row``, or NotFound saying ``missing`` when the lookup found none
    (an app, a release, a job, a user, a hostname)."""
    if row is None:
        raise NotFound(missing)
    return row


class Conflict(PaasError):
    status_code = 409


class Unavailable(PaasError):
    """A part paas needs (the agent, the engine) does not answer."""

    status_code = 503


class InvalidInput(PaasError):
    status_code = 422


class StepFailed(PaasError):
    """A pipeline step failed; ``step`` names it (fetch, build, release, ...)."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.reason = message
