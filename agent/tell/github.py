"""Telling GitHub how a deploy went: commit statuses and deployments, through
githubkit (typed from GitHub's own OpenAPI description; it checks each
request body against it before sending).

One call at a time, with a timeout and no retries of its own: the GitHub
channel (agent/tell/reports.py) decides when to try again, from what
``GitHubTrouble`` says.
The token is the app's, opened by the agent for the call and never logged;
error text is scrubbed of it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

__all__ = ["GitHubClient", "GitHubTrouble"]

log = logging.getLogger("paas.agent.github")

MAX_DESCRIPTION = 140  # GitHub cuts commit status descriptions here


@dataclass
class GitHubTrouble(Exception):
    """A call that did not work: ``retry_after`` seconds (None: do not retry,
    the request itself is wrong, e.g. a bad token or repository)."""

    reason: str
    retry_after: float | None = None

    def __str__(self) -> str:
        return self.reason


def _created_id(response: Any) -> int | None:
    """The id of what a 2xx answer created. An answer that does not match
    GitHub's schema (githubkit validates it when read) still means the call
    was accepted: it is read as plain JSON, said once in the log, never sent
    again."""
    from pydantic import ValidationError

    try:
        found = getattr(response.parsed_data, "id", None)
    except (ValidationError, ValueError) as exc:
        log.warning(
            "GitHub accepted a call (%s) but its answer does not match GitHub's schema (%s): taken as done",
            response.status_code,
            type(exc).__name__,
        )
        try:
            body = response.raw_response.json()
        except ValueError:
            return None
        found = body.get("id") if isinstance(body, dict) else None
    return found if type(found) is int and found > 0 else None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


class GitHubClient:
    """Calls for one repository with one token."""

    def __init__(self, *, base_url: str, token: str, repo: str, timeout: float) -> None:
        from githubkit import GitHub

        self.owner, self.name = repo.split("/", 1)
        self._token = token
        self._gh = GitHub(
            token,
            base_url=base_url.rstrip("/") + "/",
            timeout=timeout,
            auto_retry=False,  # the outbox retries, honouring Retry-After
            http_cache=False,
            user_agent="paas",
            trust_env=False,
        )

    def commit_status(self, sha: str, *, state: str, description: str, context: str, target_url: str) -> None:
        self._call(
            "commit status",
            lambda: self._gh.rest.repos.create_commit_status(  # type: ignore[call-overload]
                self.owner,
                self.name,
                sha,
                data={
                    "state": state,
                    "description": _short(description),
                    "context": context,
                    **({"target_url": target_url} if target_url else {}),
                },
            ),
        )

    def create_deployment(
        self, *, ref: str, environment: str, description: str, payload: dict[str, Any]
    ) -> int:
        response = self._call(
            "deployment",
            lambda: self._gh.rest.repos.create_deployment(
                self.owner,
                self.name,
                ref=ref,
                environment=environment,
                description=_short(description),
                auto_merge=False,  # deploy exactly this commit
                required_contexts=[],  # paas's own pending status must not block it
                payload=payload,
                production_environment=environment == "production",
                transient_environment=False,
            ),
        )
        deployment_id = _created_id(response)
        if deployment_id is None:  # a 202: GitHub merged the base branch instead
            raise GitHubTrouble(
                f"deployment: GitHub answered {response.status_code} without a deployment id: not retried"
            )
        return deployment_id

    def deployment_status(
        self,
        deployment_id: int,
        *,
        state: str,
        description: str,
        log_url: str = "",
        environment_url: str = "",
    ) -> None:
        body: dict[str, Any] = {
            "state": state,
            "description": _short(description),
            "auto_inactive": False,  # paas marks the one it replaced, itself
        }
        if log_url:
            body["log_url"] = log_url
        if environment_url:
            body["environment_url"] = environment_url
        self._call(
            f"deployment status {state}",
            lambda: self._gh.rest.repos.create_deployment_status(  # type: ignore[call-overload]
                self.owner, self.name, deployment_id, data=body
            ),
        )

    def _call(self, what: str, call: Any) -> Any:
        from githubkit.exception import RateLimitExceeded, RequestFailed, RequestTimeout

        try:
            return call()
        except RateLimitExceeded as exc:
            wait = max(1.0, exc.retry_after.total_seconds())
            raise GitHubTrouble(
                self._scrub(f"{what}: rate limited ({exc.response.status_code}); retrying in {wait:.0f} s"),
                retry_after=wait,
            ) from None
        except RequestFailed as exc:
            code = exc.response.status_code
            message = self._message(exc.response.raw_response)
            if code >= 500 or code == 429:
                raise GitHubTrouble(self._scrub(f"{what}: GitHub answered {code} {message}"), 0) from None
            hint = {
                401: "the token is wrong, expired or revoked",
                403: "the token lacks a permission (Commit statuses and Deployments: read and write)",
                404: "no such repository for this token (check `--github-repo` and the token's repositories)",
            }.get(code, "")
            raise GitHubTrouble(
                self._scrub(f"{what}: GitHub answered {code} {message}" + (f": {hint}" if hint else ""))
            ) from None
        except RequestTimeout:
            raise GitHubTrouble(f"{what}: GitHub did not answer in time", 0) from None
        except Exception as exc:  # noqa: BLE001  (connection refused, DNS, TLS: try again later)
            origin = getattr(exc, "exc", exc)
            raise GitHubTrouble(self._scrub(f"{what}: {type(origin).__name__}: {origin}"), 0) from None

    @staticmethod
    def _message(response: Any) -> str:
        try:
            body = response.json()
        except ValueError:
            return ""
        message = body.get("message", "") if isinstance(body, dict) else ""
        return f"({_short(str(message))})" if message else ""

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "****") if self._token else text
