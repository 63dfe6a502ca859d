"""Plain-HTTP GETs from the agent to loopback: health checks and nginx's
switch verification. One client, made once: ``httpx.get`` builds a client
and a TLS context for every call (about 25 ms of CPU here, more than the
request itself). Keep-alive is off, so every probe is a fresh connection
(what both callers mean to test), and proxy variables are ignored: the
target is always this machine."""

from __future__ import annotations

import functools

import httpx

__all__ = ["get"]


@functools.cache
def _client() -> httpx.Client:
    return httpx.Client(
        limits=httpx.Limits(max_keepalive_connections=0), follow_redirects=False, trust_env=False
    )


def get(url: str, *, timeout: float, headers: dict[str, str] | None = None) -> httpx.Response:
    return _client().get(url, headers=headers, timeout=timeout)
