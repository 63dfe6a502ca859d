"""GitHub webhooks, the pure part: signature check and push-payload parsing.

The web route reads the body and calls these; nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

__all__ = ["PushDecision", "decide_push", "sign", "verify_signature"]

ZERO_SHA = "0" * 40


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` header value GitHub sends for ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of an ``X-Hub-Signature-256`` header."""
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


@dataclass(frozen=True)
class PushDecision:
    deploy: bool
    reason: str
    ref: str = ""
    commit: str = ""
    message: str = ""
    pusher: str = ""
    pushed_at: int | None = None  # repository.pushed_at: when GitHub took this push (Unix seconds)


def decide_push(payload: Any, *, branch: str) -> PushDecision:
    """What to do with a push event's payload for an app tracking ``branch``.

    Raises ValueError when the payload does not have a push event's shape.
    """
    if not isinstance(payload, dict):
        raise ValueError("payload is not a JSON object")
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref:
        raise ValueError("push payload has no 'ref'")
    after = payload.get("after")
    if not isinstance(after, str):
        raise ValueError("push payload has no 'after' commit")

    if ref.startswith("refs/tags/"):
        return PushDecision(False, f"ignored: {ref} is a tag, not a branch", ref=ref)
    if not ref.startswith("refs/heads/"):
        return PushDecision(False, f"ignored: {ref} is not a branch", ref=ref)
    pushed = ref.removeprefix("refs/heads/")
    if pushed != branch:
        return PushDecision(False, f"ignored: push to branch {pushed!r}, app deploys {branch!r}", ref=ref)
    if payload.get("deleted") is True or after == ZERO_SHA:
        return PushDecision(False, f"ignored: branch {pushed!r} was deleted", ref=ref)
    if len(after) != 40 or any(c not in "0123456789abcdef" for c in after):
        raise ValueError("push payload 'after' is not a commit id")

    repository = payload.get("repository")
    pushed_at = repository.get("pushed_at") if isinstance(repository, dict) else None
    head = payload.get("head_commit") or {}
    message = head.get("message", "") if isinstance(head, dict) else ""
    pusher = payload.get("pusher") or {}
    who = pusher.get("name", "") if isinstance(pusher, dict) else ""
    return PushDecision(
        True,
        f"deploying {after[:12]} from {pushed!r}",
        ref=ref,
        commit=after,
        message=str(message)[:2000],
        pusher=str(who)[:200],
        pushed_at=pushed_at if type(pushed_at) is int and 0 <= pushed_at < 2**62 else None,
    )
