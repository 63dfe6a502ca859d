"""The rules of telling people, pure: which events a target can hear,
which Apprise services and options paas sends to, the checks web applies
on input (and the agent again on every row it reads), GitHub repository
and environment names, and how a notification URL is shown without its
secrets.

Where they are stored is paas/notify_targets.py; sending is the agent's
(agent/tell/). Nothing here touches the database: the command line and the
notification sender import it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = [
    "EVENTS",
    "NOTIFY_SCHEMES",
    "REFUSED_OPTIONS",
    "check_events",
    "check_github_environment",
    "check_github_repo",
    "check_notify_url",
    "github_repo_from_url",
    "mask_url",
    "url_options",
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
# The Apprise services paas sends to (Apprise's own scheme names). Apprise knows a hundred more,
# some of which read local files or talk to the machine itself (dbus, syslog, a desktop); the
# URL is chosen by whoever holds web, so web refuses any other on input and the agent and its
# sender (agent/tell/notify_send.py) refuse it again before sending.
NOTIFY_SCHEMES: dict[str, str] = {
    "slack": "Slack",
    "discord": "Discord",
    "tgram": "Telegram",
    "msteams": "Microsoft Teams (older Apprise)",
    "workflow": "Microsoft Teams (Power Automate workflows)",
    "workflows": "Microsoft Teams (Power Automate workflows)",
    "matrix": "Matrix",
    "matrixs": "Matrix over HTTPS",
    "mmost": "Mattermost",
    "mmosts": "Mattermost over HTTPS",
    "mailto": "email",
    "mailtos": "email over TLS",
    "ntfy": "ntfy",
    "ntfys": "ntfy over HTTPS",
    "gotify": "Gotify",
    "gotifys": "Gotify over HTTPS",
    "pover": "Pushover",
    "json": "a webhook (JSON)",
    "jsons": "a webhook (JSON) over HTTPS",
    "form": "a webhook (form)",
    "forms": "a webhook (form) over HTTPS",
}
# URL options with which Apprise reads a file on the machine (a message template, a PGP key, a
# key or subscription file) or attaches one: refused wherever they appear in the query
REFUSED_OPTIONS = frozenset({"template", "pgppub", "pgpprv", "keyfile", "subfile", "attach"})
_SCHEME_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]{1,30})://(?P<rest>\S+)")
_GITHUB_REPO = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
_ENVIRONMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_GITHUB_URL = re.compile(
    r"(?:https://|ssh://git@|git@)(?P<host>[A-Za-z0-9.-]+)[/:](?P<repo>[^/\s]+/[^/\s]+?)(?:\.git)?/?"
)


def check_notify_url(value: str) -> str:
    """An Apprise URL as typed: ``scheme://…``, one line, of a service in
    ``NOTIFY_SCHEMES``, with none of ``REFUSED_OPTIONS``. Whether the rest
    makes sense to Apprise is for ``paas notify test`` (the agent) to say."""
    value = value.strip()
    if len(value) > MAX_URL:
        raise ValueError(f"is longer than {MAX_URL} characters")
    match = _SCHEME_URL.fullmatch(value)
    if match is None:
        raise ValueError(
            "must be an Apprise URL such as slack://…, discord://…, mailtos://…, ntfys://… or json://…"
        )
    if match["scheme"] not in NOTIFY_SCHEMES:
        raise ValueError(
            f"{match['scheme']}:// is not a service paas sends to; it sends to "
            f"{', '.join(s + '://' for s in NOTIFY_SCHEMES)} (a web address such as "
            "https://hooks.slack.com/… is given in Apprise's form: slack://…)"
        )
    refused = sorted(url_options(value) & REFUSED_OPTIONS)
    if refused:
        raise ValueError(
            f"the option {refused[0]}= is not allowed: paas never lets Apprise read a file on the server "
            f"(refused: {', '.join(o + '=' for o in sorted(REFUSED_OPTIONS))})"
        )
    return value


def url_options(value: str) -> set[str]:
    """The names of the options in an Apprise URL's query, as Apprise reads
    them: after the first ``?``, split at ``&`` and ``;``, percent-decoded,
    lower-cased, without surrounding spaces."""
    names = set()
    for pair in re.split(r"[&;]", value.partition("?")[2]):
        name = pair.partition("=")[0]
        name = name[:1] + name[1:].replace("+", " ")  # as Apprise does: a leading + is kept
        names.add(unquote(name).strip().lower())
    return names - {""}


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
    if value and (not _GITHUB_REPO.fullmatch(value) or value.split("/")[1] in (".", "..")):
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
