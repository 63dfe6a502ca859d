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
"""

from __future__ import annotations

__all__ = [
    "Conflict",
    "InvalidInput",
    "NotFound",
    "PaasError",
    "SettingsError",
    "StepFailed",
    "Unavailable",
]


class PaasError(Exception):
    """Base of every error paas raises on purpose."""

    status_code = 500


class SettingsError(PaasError):
    status_code = 500


class NotFound(PaasError):
    status_code = 404


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
