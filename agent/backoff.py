"""How long the agent waits before trying again: one formula for every
retry it keeps in the database (a certificate the CA refused, a GitHub
report, a notification), each with its own numbers.

The count of failures in a row and the time of the next try live on the
row (``Domain.attempts`` and ``next_attempt_at``, ``Notice.attempts`` and
``next_at``), so a restart of the agent neither forgets a back-off nor
starts it over.
"""

from __future__ import annotations

__all__ = ["retry_delay"]


def retry_delay(attempt: int, *, first: float, factor: float, most: float | None = None) -> float:
    """Seconds to wait after the ``attempt``-th failure in a row (1: the
    first): ``first``, then ``factor`` times the wait before, never more than
    ``most``. Certificates: 1 h, 6 h, then daily (``first=3600, factor=6,
    most=86400``); GitHub: 1 s doubling up to ``PAAS_GITHUB_RETRY_MAX_SECONDS``;
    notifications: ``PAAS_NOTIFY_RETRY_SECONDS`` times 4 each time."""
    delay = first
    for _ in range(attempt - 1):
        if most is not None and delay >= most:
            break  # a row failing for months counts its failures, the wait stops growing
        delay *= factor
    return delay if most is None else min(delay, most)
