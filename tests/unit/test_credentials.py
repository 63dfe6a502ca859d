"""Issue 15, items 5 and 6: users have a lifecycle (list, delete, new
password from the server or the UI) that ends their sessions at once;
sessions have an idle and an absolute lifetime and a __Host- cookie over
HTTPS; sign-in throttling slows one (address, username) pair without
locking the owner out from elsewhere, in bounded memory."""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from paas import users
from paas.db import session_scope
from paas.errors import PaasError
from paas.models import Event
from paas.settings import Settings
from tests.unit.cli_support import run, server_env
from tests.unit.test_ui import PASSWORD, csrf_of, sign_in
from web import sessions
from web.app import create_web_app
from web.pages.signin import LoginThrottle

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def admin(engine: Engine) -> str:
    with session_scope(engine) as s:
        users.create_user(s, username="admin", password=PASSWORD)
    return "admin"


def browser(settings: Settings, engine: Engine, address: str = "198.51.100.7", **kw: object) -> TestClient:
    return TestClient(create_web_app(settings, engine=engine), client=(address, 40000), **kw)  # type: ignore[arg-type]


def signed_in(client: TestClient) -> bool:
    return client.get("/", follow_redirects=False).status_code == 200


def test_a_deleted_users_sessions_stop_at_once(settings: Settings, engine: Engine, admin: str) -> None:
    with browser(settings, engine) as laptop:
        assert sign_in(laptop).status_code == 303 and signed_in(laptop)
        with session_scope(engine) as s:
            users.delete_user(s, username="admin")
        assert not signed_in(laptop)
        with session_scope(engine) as s:  # a new user of the same name is someone else
            users.create_user(s, username="admin", password=PASSWORD)
        assert not signed_in(laptop)


def test_a_new_password_from_the_server_ends_every_session(
    settings: Settings, engine: Engine, admin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in server_env(settings).items():
        monkeypatch.setenv(name, value)
    with browser(settings, engine) as laptop, browser(settings, engine, "198.51.100.8") as phone:
        sign_in(laptop), sign_in(phone)
        assert signed_in(laptop) and signed_in(phone)
        code, out = run("admin", "users", "passwd", "admin", input=NEW_PASSWORD + "\n")
        assert code == 0 and "their sessions have ended" in out, out
        assert not signed_in(laptop) and not signed_in(phone)
        assert sign_in(laptop).status_code == 401  # the old password is gone
        assert sign_in(laptop, password=NEW_PASSWORD).status_code == 303 and signed_in(laptop)


def test_a_new_password_from_the_ui_ends_the_other_sessions_only(
    settings: Settings, engine: Engine, admin: str
) -> None:
    with browser(settings, engine) as laptop, browser(settings, engine, "198.51.100.8") as phone:
        sign_in(laptop), sign_in(phone)
        page = laptop.get("/account")
        assert page.status_code == 200 and "Change your password" in page.text

        def change(current: str, new: str, confirm: str) -> int:
            form = {
                "csrf": csrf_of(laptop.get("/account").text),
                "current": current,
                "new": new,
                "confirm": confirm,
            }
            return laptop.post("/account/password", data=form, follow_redirects=False).status_code

        assert change("wrong current password", NEW_PASSWORD, NEW_PASSWORD) == 401
        assert change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x") == 422
        assert change(PASSWORD, "short", "short") == 422
        assert signed_in(phone)  # nothing changed yet
        assert change(PASSWORD, NEW_PASSWORD, NEW_PASSWORD) == 303
        assert "Password changed" in laptop.get("/").text  # still signed in, told once
        assert signed_in(laptop) and not signed_in(phone)
    with session_scope(engine) as s:
        assert s.exec(select(Event).where(Event.action == "user.password")).first() is not None
        assert PASSWORD not in json.dumps([e.detail for e in s.exec(select(Event)).all()])


def test_sessions_end_after_their_absolute_lifetime(
    settings: Settings, engine: Engine, admin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = sessions.now()
    with browser(settings, engine) as laptop:
        sign_in(laptop)
        monkeypatch.setattr(sessions, "now", lambda: start + settings.session_hours * 3600 - 60)
        assert signed_in(laptop)  # busy all along: still within PAAS_SESSION_HOURS
        monkeypatch.setattr(sessions, "now", lambda: start + settings.session_hours * 3600 + 60)
        assert not signed_in(laptop)


def test_the_cookie_is_host_prefixed_and_secure_over_https(
    settings: Settings, engine: Engine, admin: str
) -> None:
    with browser(settings, engine, base_url="https://paas.apps.test") as secure:
        cookie = sign_in(secure).headers["set-cookie"]
        assert cookie.startswith("__Host-paas_session=")
        flags = cookie.lower()
        assert "; secure" in flags and "path=/" in flags and "domain=" not in flags
        assert f"max-age={settings.session_idle_minutes * 60}" in flags  # the idle lifetime
        assert signed_in(secure)
    with browser(settings, engine) as plain:  # plain HTTP (loopback, or before a certificate)
        assert sign_in(plain).headers["set-cookie"].startswith("paas_session=")


def test_the_server_cli_lists_and_deletes_users(
    settings: Settings, engine: Engine, admin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in server_env(settings).items():
        monkeypatch.setenv(name, value)
    code, out = run("admin", "users", "list", "--json")
    assert code == 0 and [u["username"] for u in json.loads(out)] == ["admin"]
    assert "password" not in out
    with pytest.raises(PaasError, match="no user named 'ghost'"):
        run("admin", "users", "passwd", "ghost", input=NEW_PASSWORD + "\n")
    with pytest.raises(PaasError, match="pass --yes"):
        run("admin", "users", "delete", "admin")
    code, out = run("admin", "users", "delete", "admin", "--yes")
    assert code == 0 and "no user can sign in to the web UI now" in out
    assert json.loads(run("admin", "users", "list", "--json")[1]) == []


# throttling ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_delays_grow_for_one_pair_and_never_touch_another_address() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock)
    for _ in range(LoginThrottle.FREE_FAILURES):
        throttle.failed("203.0.113.5", "admin")
        assert throttle.wait("203.0.113.5", "admin") == 0
    waits = []
    for _ in range(5):
        throttle.failed("203.0.113.5", "admin")
        waits.append(throttle.wait("203.0.113.5", "admin"))
    assert waits == [1, 2, 4, 8, 16]  # growing, never a hard block
    assert throttle.wait("198.51.100.7", "admin") == 0  # the owner elsewhere
    assert throttle.wait("203.0.113.5", "someone-else") == 0
    for _ in range(30):
        throttle.failed("203.0.113.5", "admin")
    assert throttle.wait("203.0.113.5", "admin") == LoginThrottle.MAX_DELAY  # bounded
    clock.t += LoginThrottle.MAX_DELAY
    assert throttle.wait("203.0.113.5", "admin") == 0  # and then one more try


def test_ipv6_addresses_of_one_64_share_one_budget() -> None:
    """A host with a /64 (as every IPv6 customer has) cannot take a fresh
    address for each guess: the /64 is slowed as one; the next /64 is not."""
    clock = Clock()
    throttle = LoginThrottle(clock)
    for i in range(LoginThrottle.FREE_FAILURES + 1):
        throttle.failed(f"2001:db8:1:2::{i + 1:x}", "admin")
    assert throttle.wait("2001:db8:1:2:ffff:ffff:ffff:ffff", "admin") == 1
    assert throttle.wait("2001:db8:1:3::1", "admin") == 0
    for i in range(LoginThrottle.ADDRESS_FREE_FAILURES + 1):
        throttle.failed(f"2001:db8:1:2:{i:x}::1", f"user{i}")
    assert throttle.wait("2001:db8:1:2:abcd::9", "anyone") > 0
    throttle.failed("::ffff:203.0.113.5", "root")  # an IPv4 client on a dual-stack socket
    assert LoginThrottle.client("::ffff:203.0.113.5") == "203.0.113.5"


def test_the_owner_signs_in_from_another_address_while_one_is_slowed(
    settings: Settings, engine: Engine, admin: str
) -> None:
    app = create_web_app(settings, engine=engine)
    with (
        TestClient(app, client=("203.0.113.5", 1)) as attacker,
        TestClient(app, client=("198.51.100.7", 1)) as owner,
    ):
        for _ in range(LoginThrottle.FREE_FAILURES + 1):
            assert sign_in(attacker, password="guess").status_code == 401
        slowed = sign_in(attacker)  # even the right password waits there
        assert slowed.status_code == 429 and "Try again in 1 seconds" in slowed.text
        assert sign_in(owner).status_code == 303 and signed_in(owner)


def test_random_usernames_cannot_grow_memory() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock)
    for i in range(3 * LoginThrottle.MAX_ENTRIES):
        throttle.failed(f"203.0.{i % 200}.1", uuid.uuid4().hex)
        clock.t += 0.001
    assert len(throttle) <= LoginThrottle.MAX_ENTRIES
    clock.t += LoginThrottle.FORGET_SECONDS + 1
    throttle.wait("198.51.100.7", "admin")
    assert len(throttle) == 0  # entries with nothing left to remember are forgotten
