"""Plain-HTTP GETs from the agent to loopback: health checks and nginx's
switch verification. One client, made once: ``httpx.get`` builds a client
and a TLS context for every call (about 25 ms of CPU here, more than the
request itself). Keep-alive is off, so every probe is a fresh connection
(what both callers mean to test), and proxy variables are ignored: the
target is always this machine. And whether something accepts connections
at an address or a Unix socket (paas doctor, paas restore)."""

from __future__ import annotations

import functools
import socket
from pathlib import Path

import httpx

__all__ = ["connects", "connects_unix", "get"]


@functools.cache
def _client() -> httpx.Client:
    return httpx.Client(
        limits=httpx.Limits(max_keepalive_connections=0), follow_redirects=False, trust_env=False
    )


def get(url: str, *, timeout: float, headers: dict[str, str] | None = None) -> httpx.Response:
    return _client().get(url, headers=headers, timeout=timeout)


def connects(host: str, port: int, *, timeout: float = 5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def connects_unix(path: Path, *, timeout: float = 5) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            return True
        except OSError:
            return False
