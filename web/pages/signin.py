"""Signing in and out, and one's own account. Sessions are web/sessions.py;
sign-in attempts are slowed per (address, username) pair (``LoginThrottle``),
never blocked per username."""

from __future__ import annotations

import ipaddress
import secrets
import threading
import time
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from paas import services, users
from paas.errors import InvalidInput
from web.deps import SessionDep
from web.pages.common import STALE_FORM, PostedDep, check_csrf, flash, render, signed_in
from web.sessions import start_session

__all__ = ["LoginThrottle", "router"]

router = APIRouter(include_in_schema=False)


class LoginThrottle:
    """Sign-ins slowed per (address, username) pair with growing delays, never
    blocked per username: whoever guesses from one address cannot lock the
    owner out from another.

    A pair has FREE_FAILURES failures free; each one after that doubles the
    wait before the pair may try again (1 s, 2 s, 4 s, ... at most
    MAX_DELAY). An address that fails for many usernames is slowed the same
    way as a whole, after ADDRESS_FREE_FAILURES. An IPv6 address counts as
    its /64 (``client``). A success clears its pair.
    Entries are forgotten FORGET_SECONDS after their last failure and at
    most MAX_ENTRIES are kept (the oldest go first), so random usernames
    cannot grow memory. In memory: one web process."""

    FREE_FAILURES = 3
    ADDRESS_FREE_FAILURES = 20
    MAX_DELAY = 15 * 60.0
    FORGET_SECONDS = 3600.0
    MAX_ENTRIES = 10_000

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._entries: OrderedDict[tuple[str, ...], tuple[int, float]] = OrderedDict()  # failures, last
        self._lock = threading.Lock()
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def client(address: str) -> str:
        """Who is slowed: an IPv4 address, or the /64 an IPv6 address is in
        (one customer's link: a host there may use any of its 2**64
        addresses, and a fresh one must not buy a fresh budget)."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return address
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return str(ip.ipv4_mapped)
            return str(ipaddress.IPv6Network((ip, 64), strict=False))
        return str(ip)

    def _keys(self, address: str, username: str) -> tuple[tuple[tuple[str, ...], int], ...]:
        address = self.client(address)
        pair = ("pair", address, username.strip().lower()[:200])
        return (pair, self.FREE_FAILURES), (("address", address), self.ADDRESS_FREE_FAILURES)

    def _sweep(self, now: float) -> None:
        while self._entries:
            key, (_failures, last) = next(iter(self._entries.items()))
            if now - last <= self.FORGET_SECONDS and len(self._entries) <= self.MAX_ENTRIES:
                return
            del self._entries[key]

    def wait(self, address: str, username: str) -> int:
        """Whole seconds before this pair may try again; 0 when it may now."""
        with self._lock:
            now = self._clock()
            self._sweep(now)
            waits = [0.0]
            for key, free in self._keys(address, username):
                failures, last = self._entries.get(key, (0, now))
                if failures > free:
                    waits.append(last + min(2.0 ** (failures - free - 1), self.MAX_DELAY) - now)
            return int(max(waits) + 0.999)

    def failed(self, address: str, username: str) -> None:
        with self._lock:
            now = self._clock()
            for key, _free in self._keys(address, username):
                failures, _last = self._entries.pop(key, (0, now))
                self._entries[key] = (failures + 1, now)  # now the newest
            self._sweep(now)

    def succeeded(self, address: str, username: str) -> None:
        with self._lock:
            self._entries.pop(self._keys(address, username)[0][0], None)


def _safe_next(value: str) -> str:
    """Only a path on this site (never //host or a URL): no open redirect."""
    return value if value.startswith("/") and not value.startswith("//") and "\\" not in value else "/"


@router.get("/login")
def login_page(request: Request, next: str = "/") -> HTMLResponse:  # noqa: A002  (the query name)
    return render(request, "login.html", next=_safe_next(next), error="", username="")


@router.post("/login", response_model=None)
def login(
    request: Request,
    session: SessionDep,
    username: str = Form(default="", max_length=200),
    password: str = Form(default="", max_length=1000),
    csrf: str = Form(default="", max_length=200),
    next: str = Form(default="/", max_length=2000),  # noqa: A002
) -> Response:
    target = _safe_next(next)
    if not check_csrf(request, csrf):
        return render(request, "login.html", 403, next=target, username=username, error=STALE_FORM)
    throttle: LoginThrottle = request.app.state.login_throttle
    client = request.client.host if request.client else "?"
    wait = throttle.wait(client, username)
    if wait:
        error = f"Too many failed sign-ins from here. Try again in {wait} seconds."
        return render(request, "login.html", 429, next=target, username=username, error=error)
    user = users.authenticate(session, username=username, password=password)
    if user is None:
        throttle.failed(client, username)
        return render(
            request, "login.html", 401, next=target, username=username, error="Wrong username or password."
        )
    throttle.succeeded(client, username)
    start_session(request.session, user)
    request.session["csrf"] = secrets.token_urlsafe(32)
    return RedirectResponse(target, status_code=303)


@router.post("/logout", response_model=None)
def logout(request: Request, csrf: str = Form(default="", max_length=200)) -> Response:
    if not check_csrf(request, csrf):
        return HTMLResponse("The form expired: reload the page and sign out again.", status_code=403)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/account")
def account_page(request: Request) -> HTMLResponse:
    signed_in(request)
    return render(request, "account.html", error="", min_length=users.MIN_PASSWORD)


@router.post("/account/password", response_model=None)
def change_password(request: Request, session: SessionDep, form: PostedDep) -> Response:
    """A new password for the signed-in user, after the current one: every
    other session of theirs ends, this one goes on (renewed)."""

    def refuse(status_code: int, error: str) -> HTMLResponse:
        return render(request, "account.html", status_code, error=error, min_length=users.MIN_PASSWORD)

    throttle: LoginThrottle = request.app.state.login_throttle
    client = request.client.host if request.client else "?"
    wait = throttle.wait(client, form.user)
    if wait:
        return refuse(429, f"Too many wrong passwords. Try again in {wait} seconds.")
    if users.authenticate(session, username=form.user, password=form.get("current")) is None:
        throttle.failed(client, form.user)
        return refuse(401, "The current password is wrong.")
    if form.get("new") != form.get("confirm"):
        return refuse(422, "The new password and its confirmation differ.")
    try:
        user = users.change_password(session, username=form.user, password=form.get("new"))
    except InvalidInput as exc:
        return refuse(422, str(exc).capitalize() + ".")
    services.record_event(session, actor=form.actor, action="user.password", detail=user.username)
    start_session(request.session, user)
    request.session["csrf"] = secrets.token_urlsafe(32)
    flash(request, "Password changed. Your other sessions have ended.")
    return RedirectResponse("/", status_code=303)
