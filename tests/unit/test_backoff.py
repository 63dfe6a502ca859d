"""The one retry formula (agent/backoff.py), with the numbers each retry
of the agent gives it: the waits are today's, exactly."""

from __future__ import annotations

from datetime import timedelta

from agent.backoff import retry_delay
from agent.certs import BACKOFF


def test_certificates_wait_an_hour_six_hours_then_a_day() -> None:
    waits = [retry_delay(n, first=3600, factor=6, most=86400) for n in range(1, 6)]
    assert waits == [3600, 21600, 86400, 86400, 86400]
    assert [wait / timedelta(hours=1) for wait in BACKOFF] == [1, 6, 24]  # what the certificate test walks


def test_github_doubles_from_a_second_up_to_its_most() -> None:
    waits = [retry_delay(n, first=1, factor=2, most=300) for n in range(1, 12)]
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    # a report failing for months counts on; the wait stays at the most
    assert retry_delay(1000, first=1, factor=2, most=3600) == 3600


def test_notifications_wait_four_times_longer_each_time() -> None:
    assert [retry_delay(n, first=5.0, factor=4) for n in range(1, 5)] == [5.0, 20.0, 80.0, 320.0]
    assert [retry_delay(n, first=0.01, factor=4) for n in range(1, 5)] == [0.01 * 4**k for k in range(4)]
