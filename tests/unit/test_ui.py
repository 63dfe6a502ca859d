"""The web UI's first pages with FastAPI's TestClient: sign-in (argon2,
CSRF, rate limit, no open redirect), sign-out, and the apps list. Every page
but /login redirects a visitor who is not signed in."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from paas.db import session_scope
from paas.models import User
from paas.users import create_user
from tests.unit.cli_support import invoke_main, server_env
from tests.unit.test_rollback_api import release

PASSWORD = "correct horse battery"


@pytest.fixture
def admin(engine: Engine) -> str:
    with session_scope(engine) as s:
        create_user(s, username="admin", password=PASSWORD)
    return "admin"


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def sign_in(client: TestClient, username: str = "admin", password: str = PASSWORD, next_path: str = "/"):  # noqa: ANN201
    token = csrf_of(client.get("/login").text)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf": token, "next": next_path},
        follow_redirects=False,
    )


def test_pages_redirect_to_sign_in_and_back(client: TestClient, admin: str) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/"
    r = sign_in(client, next_path="/")
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert (
        cookie.startswith("paas_session=")
        and "httponly" in cookie.lower()
        and "samesite=lax" in cookie.lower()
    )
    assert "domain=" not in cookie.lower()  # host-only: app subdomains never see it
    assert client.get("/").status_code == 200


def test_wrong_password_and_unknown_user_look_the_same(client: TestClient, admin: str) -> None:
    wrong = sign_in(client, password="not the password")
    unknown = sign_in(client, username="nobody")
    for r in (wrong, unknown):
        assert r.status_code == 401 and "Wrong username or password." in r.text
        assert PASSWORD not in r.text
    assert client.get("/", follow_redirects=False).status_code == 303
    assert 'value="nobody"' in unknown.text  # what was typed is kept, never the password


def test_a_form_without_its_csrf_token_is_refused(client: TestClient, admin: str) -> None:
    client.get("/login")
    r = client.post("/login", data={"username": "admin", "password": PASSWORD, "csrf": "forged"})
    assert r.status_code == 403 and "form expired" in r.text
    assert client.get("/", follow_redirects=False).status_code == 303
    assert sign_in(client).status_code == 303
    r = client.post("/logout", data={"csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403 and client.get("/").status_code == 200  # still signed in
    token = csrf_of(client.get("/").text)
    r = client.post("/logout", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert client.get("/", follow_redirects=False).status_code == 303


def test_sign_ins_are_rate_limited(client: TestClient, admin: str) -> None:
    for _ in range(4):
        assert sign_in(client, password="guess").status_code == 401
    r = sign_in(client)  # even the right password waits now
    assert r.status_code == 429 and "Too many failed sign-ins" in r.text


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_next_never_leaves_the_site(client: TestClient, admin: str, target: str) -> None:
    r = sign_in(client, next_path=target)
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_the_apps_list(client: TestClient, auth: dict[str, str], admin: str, engine: Engine) -> None:
    assert (
        client.post(
            "/api/v1/apps", json={"name": "shop", "repo_url": "https://github.com/o/r.git"}, headers=auth
        ).status_code
        == 201
    )
    sign_in(client)
    page = client.get("/").text
    assert "shop" in page and 'class="badge new"' in page
    release(engine, 1)
    page = client.get("/").text
    assert 'class="badge live"' in page and "v1" in page and "http://shop.apps.test" in page
    client.post("/api/v1/apps/shop/rollback", json={}, headers=auth)  # nothing to roll back to: refused
    assert client.post("/api/v1/apps/shop/deploy", json={}, headers=auth).status_code == 202
    assert 'class="badge deploying"' in client.get("/").text


def test_the_ui_is_not_in_the_api_schema_and_the_api_ignores_the_cookie(
    client: TestClient, admin: str
) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/login" not in paths and "/" not in paths
    sign_in(client)
    assert client.get("/api/v1/apps").status_code == 401  # a session cookie is no API token


def test_create_user_command(
    engine: Engine, settings, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:  # noqa: ANN001
    import io
    import sys

    from paas.cli import main

    env = server_env(settings)
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    with pytest.raises(SystemExit) as done:
        invoke_main(main, ("admin", "create-user", "Alice"), env)
    assert done.value.code in (0, None) and "created user alice" in capsys.readouterr().out
    with session_scope(engine) as s:
        user = s.exec(select(User).where(User.username == "alice")).one()
        assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    monkeypatch.setattr(sys, "stdin", io.StringIO("never read\n"))
    with pytest.raises(SystemExit) as done:
        invoke_main(main, ("admin", "create-user", "bob", "--if-none"), env)  # alice exists: nothing
    assert done.value.code in (0, None) and capsys.readouterr().out == ""
    for stdin, message in (("short\n", "at least 12 characters"), (PASSWORD + "\n", "already exists")):
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        with pytest.raises(SystemExit) as failed:
            invoke_main(main, ("admin", "create-user", "alice"), env)
        err = capsys.readouterr().err
        assert failed.value.code == 1 and message in err and "Traceback" not in err


def test_app_overview_activity_and_a_release_log(
    client: TestClient, auth: dict[str, str], admin: str, engine: Engine, settings
) -> None:  # noqa: ANN001
    assert (
        client.post(
            "/api/v1/apps", json={"name": "shop", "repo_url": "https://github.com/o/r.git"}, headers=auth
        ).status_code
        == 201
    )
    for path in ("/apps/shop", "/apps/shop/releases/1"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == f"/login?next={path}"
    sign_in(client)
    release(engine, 1, commit_message="<script>alert(1)</script> fix", trigger="push", status="succeeded")
    log = settings.logs_dir / "shop" / "v1.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("==> build\nStep 1/3 : FROM python:3.11-slim\n<b>not markup</b>\n")
    page = client.get("/apps/shop").text
    assert "shop.apps.test" in page and "<strong>v1</strong></a>" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert 'href="/apps/shop/releases/1"' in page
    page = client.get("/apps/shop/releases/1").text
    assert "Step 1/3 : FROM python:3.11-slim" in page and "&lt;b&gt;not markup&lt;/b&gt;" in page
    assert client.get("/apps/shop/releases/9").status_code == 404
    assert client.get("/apps/nope").status_code == 404


def test_create_an_app_then_connect_github(client: TestClient, admin: str, engine: Engine, settings) -> None:  # noqa: ANN001
    assert client.get("/new", follow_redirects=False).status_code == 303
    sign_in(client)
    token = csrf_of(client.get("/new").text)
    bad = {"name": "Bad Name", "repo_url": "", "branch": "a..b", "source_dir": "", "csrf": token}
    r = client.post("/new", data=bad)
    assert r.status_code == 422
    assert (
        "must be 1-30 characters" in r.text and "is required" in r.text and "not a valid git branch" in r.text
    )
    assert 'value="Bad Name"' in r.text and 'value="a..b"' in r.text  # nothing typed is lost
    good = {
        "name": "shop",
        "repo_url": "https://github.com/o/shop.git",
        "branch": "main",
        "source_dir": "",
        "csrf": token,
    }
    r = client.post("/new", data=good)
    assert r.status_code == 201 and "http://paas.apps.test/hooks/github/shop" in r.text
    secret = re.search(r'id="webhook-secret">([0-9a-f]{64})<', r.text)
    assert secret is not None and "application/json" in r.text
    assert client.post("/new", data=good).status_code == 409  # the name is taken, said next to it
    assert client.post("/new", data={**good, "name": "other", "csrf": "x"}).status_code == 403
    waiting = client.get("/apps/shop/hook-status").text
    assert "Waiting for GitHub" in waiting and 'hx-trigger="every 2s"' in waiting
    # GitHub's ping, signed with the secret the page showed
    from paas.github import sign

    body = b'{"zen": "Keep it simple.", "hook_id": 1}'
    ping = client.post(
        "/hooks/github/shop",
        content=body,
        headers={
            "X-GitHub-Event": "ping",
            "X-GitHub-Delivery": "d-1",
            "X-Hub-Signature-256": sign(secret.group(1), body),
            "Content-Type": "application/json",
        },
    )
    assert ping.status_code == 200, ping.text
    connected = client.get("/apps/shop/hook-status").text
    assert "GitHub reached paas (ping event)" in connected and "hx-trigger" not in connected
