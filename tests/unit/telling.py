"""What the outbox's unit tests share: a recording notification sender, the
GitHub stand-in on loopback, and a teller wired to both (fixtures in
tests/unit/conftest.py)."""

from __future__ import annotations

TOKEN = "github_pat_" + "c4n4ry" * 8


class Sent:
    """A notification sender that records, and fails while ``failing``."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []
        self.bodies: list[str] = []
        self.failing = False

    def __call__(self, url: str, title: str, body: str, kind: str) -> str:
        if self.failing:
            return "connection refused"
        self.messages.append((url, title))
        self.bodies.append(body)
        return ""
