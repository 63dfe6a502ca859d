"""How the agent has the notification sender send: the child process
(agent/tell/notify_send.py) planned (``launch``), started through
agent/commands.py with the request on stdin, and its one line of answer read.

The URL may have been chosen by whoever holds web (it seals URLs with the
public key), and Apprise can read files the URL names. So the sender runs
as ``PAAS_NOTIFY_USER`` (else ``nobody``), never root, with no
supplementary group; in ``/``, with ``-I`` (no working directory,
``PYTHONPATH`` or user site on ``sys.path``: nothing planted there is
imported) and a minimal environment; the URL on stdin, never in argv, where
any user could read it.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from agent import commands
from paas.errors import PaasError
from paas.notify_rules import check_notify_url
from paas.settings import Settings

__all__ = ["MODULE", "PASSED_ENV", "Launch", "Sender", "SenderError", "launch"]

log = logging.getLogger("paas.agent.tell")

MODULE = "agent.tell.notify_send"
# what the sender keeps of the agent's environment: how to reach the internet, which CAs to trust
PASSED_ENV = (
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "TZ",
)


class SenderError(PaasError):
    """The notification sender cannot be started as configured."""


@dataclass(frozen=True)
class Launch:
    """How the agent starts the sender: ``agent.commands.capture`` with these."""

    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str = "/"
    user: int | None = None  # None: the agent's own (an agent that is not root can switch to no other)
    group: int | None = None
    extra_groups: tuple[int, ...] | None = None  # (): none at all
    warning: str = ""  # what the agent logs once when it starts


def launch(settings: Settings, *, python: str, environ: Mapping[str, str], root: bool) -> Launch:
    """The sender's plan. As root: as ``PAAS_NOTIFY_USER`` (else nobody),
    refused when that is root or, set on purpose, shares web's user or group
    (it could then read the database, and web its memory). Not root (tests,
    development): as the agent's own user, the rest the same."""
    argv = (python, "-I", "-m", MODULE)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/nonexistent",
        **{name: environ[name] for name in PASSED_ENV if name in environ},
    }
    if not root:
        return Launch(argv, env)
    name = settings.notify_account
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise SenderError(f"PAAS_NOTIFY_USER: no user named {name!r} on this machine") from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise SenderError(f"PAAS_NOTIFY_USER: {name!r} is root; notifications are sent unprivileged")
    try:
        web = pwd.getpwnam(settings.web_account)
    except KeyError:
        web = None
    warning = ""
    if web is not None and (web.pw_uid == entry.pw_uid or web.pw_gid == entry.pw_gid):
        shared = f"the sender's user {name!r} shares its user or group with web's ({settings.web_account!r})"
        if settings.notify_user:
            raise SenderError(f"PAAS_NOTIFY_USER: {shared}; give the sender a user of its own")
        warning = f"{shared}: set PAAS_NOTIFY_USER to a user of its own (install.sh makes paas-notify)"
    return Launch(argv, env, user=entry.pw_uid, group=entry.pw_gid, extra_groups=(), warning=warning)


class Sender:
    """The agent's sender of notifications: planned once, when the agent
    starts (a wrong ``PAAS_NOTIFY_USER`` stops it there), then one child per
    notification."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.plan = launch(settings, python=sys.executable, environ=os.environ, root=os.geteuid() == 0)
        if self.plan.warning:
            log.warning("%s", self.plan.warning)

    def send(self, url: str, title: str, body: str, kind: str) -> str:
        """Send one notification through Apprise in a process of its own,
        started as ``launch`` planned it; the URL checked again first. ""
        when it went, else why not."""
        try:
            url = check_notify_url(url)
        except ValueError as exc:
            return f"not sent: {exc}"
        request = json.dumps({"url": url, "title": title, "body": body, "type": kind})
        plan = self.plan
        try:
            done = commands.capture(  # our own module, the URL on stdin
                list(plan.argv),
                input=request,
                timeout=self.settings.notify_timeout,
                cwd=plan.cwd,
                environ=plan.env,
                user=plan.user,
                group=plan.group,
                extra_groups=plan.extra_groups,
                umask=0o077,
            )
        except commands.TimedOut:
            return f"no answer within {self.settings.notify_timeout} s"
        try:
            answer = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return f"the sender exited {done.returncode} without an answer"
        return "" if answer.get("ok") else str(answer.get("error") or "not delivered")
