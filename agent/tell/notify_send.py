"""Send one notification through Apprise, in a process of its own.

The agent runs ``python -I -m agent.tell.notify_send`` with a JSON object on
stdin (``url``, ``title``, ``body``, ``type``) and reads one JSON line back
(``ok``, ``error``). A process of its own because Apprise loads every
channel's plugin (about 30 MB the agent would keep for good), and because
a channel that hangs can then be killed. The URL comes on stdin, never in
argv, where any user could read it; the error is scrubbed of the URL's parts.

The URL may have been chosen by whoever holds web, and Apprise can read
files the URL names. So the agent starts this process unprivileged, in
``/``, isolated, with a minimal environment (agent/tell/sender.py plans
it), and the process checks the URL again (paas/notify_rules.py's services
and options, then as Apprise parsed it) and holds its memory closed to
other processes of its user before it reads the URL. It imports nothing of
paas but paas/notify_rules.py.
"""

from __future__ import annotations

import ctypes
import json
import logging
import re
import sys
from typing import Any

from paas.notify_rules import NOTIFY_SCHEMES, REFUSED_OPTIONS, check_notify_url

__all__ = ["close_memory", "main", "scrub", "send"]

# the constructor arguments Apprise makes of REFUSED_OPTIONS (checked as well as the options)
_FILE_ARGS = ("template", "pgp_key", "pgp_privkey", "keyfile", "subfile", "attach")
_PR_SET_DUMPABLE = 4
_TYPES = ("info", "success", "warning", "failure")


def scrub(text: str, url: str) -> str:
    """``text`` without any piece of ``url`` long enough to be a secret."""
    for piece in sorted(set(re.split(r"[/:@?&=#,+ ]+", url)), key=len, reverse=True):
        if len(piece) >= 6:
            text = text.replace(piece, "****")
    return text.replace(url, "****")


def send(request: dict[str, Any]) -> dict[str, Any]:
    import apprise
    from apprise.plugins import url_to_dict

    url = str(request.get("url", ""))
    kind = str(request.get("type", "info"))
    try:
        url = check_notify_url(url)
    except ValueError as exc:
        return {"ok": False, "error": f"not sent: {exc}"}
    parsed = url_to_dict(url)
    if not parsed:
        return {"ok": False, "error": "Apprise does not understand this URL (see its list of services)"}
    refused = sorted(set(parsed.get("qsd") or {}) & REFUSED_OPTIONS) or [
        arg for arg in _FILE_ARGS if parsed.get(arg)
    ]
    if parsed.get("schema") not in NOTIFY_SCHEMES or refused:
        why = f"the option {refused[0]}" if refused else f"the service {parsed.get('schema')!r}"
        return {"ok": False, "error": f"not sent: {why} is not allowed"}
    asset = apprise.AppriseAsset(storage_mode="memory")  # nothing written anywhere
    plugin = apprise.Apprise.instantiate(parsed, asset=asset)
    notifier = apprise.Apprise(asset=asset)
    if plugin is None or not notifier.add(plugin):
        return {"ok": False, "error": "Apprise does not understand this URL (see its list of services)"}
    with apprise.LogCapture(level=logging.WARNING) as captured:
        ok = notifier.notify(
            body=str(request.get("body", "")) or "(no details)",
            title=str(request.get("title", "")),
            notify_type=kind if kind in _TYPES else "info",
        )
        said = captured.getvalue().strip()  # type: ignore[attr-defined]
    if ok:
        return {"ok": True, "error": ""}
    # LogCapture's lines are "time - LEVEL - message": the messages alone
    lines = [line.split(" - ", 2)[-1] for line in said.splitlines() if line.strip()][-3:]
    return {"ok": False, "error": scrub(" / ".join(lines) or "the service refused it", url)[:500]}


def close_memory() -> str:
    """Make this process non-dumpable, before it reads the URL: another
    process of its user can then neither attach to it nor open its memory
    or its pipes. "" when done, else why not (one that attached already
    counts as a why)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        return f"cannot make the sender non-dumpable (errno {ctypes.get_errno()})"
    with open("/proc/self/status", encoding="ascii", errors="replace") as status:
        tracer = next((line.split()[1] for line in status if line.startswith("TracerPid:")), "0")
    return "" if tracer == "0" else f"process {tracer} is tracing the sender"


def main() -> None:
    logging.basicConfig(level=logging.CRITICAL)  # nothing on stderr: the agent reads stdout only
    try:
        refused = close_memory()
        if refused:
            result = {"ok": False, "error": f"not sent: {refused}"}
        else:
            request = json.loads(sys.stdin.read())
            result = send(request if isinstance(request, dict) else {})
    except Exception as exc:  # noqa: BLE001  (one line back, whatever happened)
        result = {"ok": False, "error": f"{type(exc).__name__}"}
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
