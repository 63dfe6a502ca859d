"""Notifications and GitHub reporting, the shared part: event names, the
checks web applies on input (and the agent again on every row it reads),
and how a notification URL is shown without its secrets.

Sending is the agent's (agent/tell.py): web stores what it is given, sealed
to the agent's key pair, and never opens it again (paas/notifications.py).
Nothing here touches the database: the command line imports it.
"""

from __future__ import annotations

import re

__all__ = [
    "EVENTS",
    "check_events",
    "check_github_environment",
    "check_github_repo",
    "check_notify_url",
    "github_repo_from_url",
    "mask_url",
]

# what a target can subscribe to; a target with no events listed gets them all
EVENTS: dict[str, str] = {
    "deploy.started": "a deploy or release began",
    "deploy.succeeded": "a new release is live",
    "deploy.failed": "a deploy failed (the step and the log's last lines)",
    "rollback": "a rollback went live",
    "app.crashed": "a container of the app exited on its own",
    "app.oom": "a container was killed by its memory limit",
    "cert.issued": "a certificate was issued",
    "cert.failed": "a certificate could not be issued",
    "cert.expiring": "a certificate expires within 14 days",
    "disk.low": "free disk space is low",
    "backup.failed": "a scheduled backup failed",
}

MAX_URL = 2000
_SCHEME_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]{1,30})://(?P<rest>\S+)")
_GITHUB_REPO = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
_ENVIRONMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_GITHUB_URL = re.compile(
    r"(?:https://|ssh://git@|git@)(?P<host>[A-Za-z0-9.-]+)[/:](?P<repo>[^/\s]+/[^/\s]+?)(?:\.git)?/?"
)


def check_notify_url(value: str) -> str:
    """An Apprise URL as typed: ``scheme://…``, one line. Whether Apprise
    knows the scheme is for ``paas notify test`` (the agent) to say."""
    value = value.strip()
    if len(value) > MAX_URL:
        raise ValueError(f"is longer than {MAX_URL} characters")
    if not _SCHEME_URL.fullmatch(value):
        raise ValueError(
            "must be an Apprise URL such as slack://…, discord://…, mailtos://…, ntfys://… or json://…"
        )
    return value


def mask_url(value: str) -> str:
    """How a listing shows a notification URL: its scheme and its last four
    characters, never what is between (tokens, passwords)."""
    match = _SCHEME_URL.fullmatch(value.strip())
    if match is None:
        return "****"
    rest = match["rest"]
    tail = rest[-4:] if len(rest) >= 12 else ""
    return f"{match['scheme']}://****{tail}"


def check_events(events: list[str]) -> list[str]:
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise ValueError(f"unknown event {unknown[0]!r}; known: {', '.join(EVENTS)}")
    return sorted(set(events))


def check_github_repo(value: str) -> str:
    """``owner/name`` of the repository statuses go to ("" = from the app's repo URL)."""
    value = value.strip()
    if value and not _GITHUB_REPO.fullmatch(value):
        raise ValueError("must be owner/name, as in github.com/owner/name")
    return value


def check_github_environment(value: str) -> str:
    value = value.strip()
    if not _ENVIRONMENT.fullmatch(value):
        raise ValueError("must be 1-100 letters, digits, '.', '_' or '-' (e.g. production)")
    return value


def github_repo_from_url(repo_url: str) -> str:
    """``owner/name`` from a GitHub clone URL (https, ssh or scp-like), else ""."""
    match = _GITHUB_URL.fullmatch(repo_url.strip())
    if match is None:
        return ""
    try:
        return check_github_repo(match["repo"])
    except ValueError:
        return ""
