"""Send one notification through Apprise, in a process of its own.

The agent runs ``python -m agent.notify_send`` with a JSON object on stdin
(``url``, ``title``, ``body``, ``type``) and reads one JSON line back
(``ok``, ``error``). A process of its own because Apprise loads every
channel's plugin (about 30 MB the agent would keep for good), and because
a channel that hangs can then be killed. The URL comes on stdin, never in
argv, where any user could read it; the error is scrubbed of the URL's parts.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

__all__ = ["scrub", "send"]

_TYPES = ("info", "success", "warning", "failure")


def scrub(text: str, url: str) -> str:
    """``text`` without any piece of ``url`` long enough to be a secret."""
    for piece in sorted(set(re.split(r"[/:@?&=#,+ ]+", url)), key=len, reverse=True):
        if len(piece) >= 6:
            text = text.replace(piece, "****")
    return text.replace(url, "****")


def send(request: dict[str, Any]) -> dict[str, Any]:
    import apprise

    url = str(request.get("url", ""))
    kind = str(request.get("type", "info"))
    notifier = apprise.Apprise()
    if not notifier.add(url):
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


def main() -> None:
    logging.basicConfig(level=logging.CRITICAL)  # nothing on stderr: the agent reads stdout only
    try:
        request = json.loads(sys.stdin.read())
        result = send(request if isinstance(request, dict) else {})
    except Exception as exc:  # noqa: BLE001  (one line back, whatever happened)
        result = {"ok": False, "error": f"{type(exc).__name__}"}
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
