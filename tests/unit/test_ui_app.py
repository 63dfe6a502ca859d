"""The web UI's app pages and forms with FastAPI's TestClient: every page
needs a session, every form its CSRF token; actions, env vars, domains,
settings and delete call the same services as the API, show errors next to
the field with what was typed kept, and change nothing when refused."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from paas.db import session_scope
from paas.models import App, EnvVar, Job, JobState
from tests.unit.test_rollback_api import jobs, release, set_env
from tests.unit.test_ui import admin, csrf_of, sign_in  # noqa: F401  (admin is a fixture)

PAGES = [
    "/apps/shop",
    "/apps/shop/activity",
    "/apps/shop/activity/table",
    "/apps/shop/logs",
    "/apps/shop/settings",
    "/apps/shop/releases/1",
    "/apps/shop/releases/1/stream",
    "/apps/shop/rollback/1",
    "/apps/shop/hook-status",
    "/new",
    "/",
]
FORMS = [
    "/apps/shop/deploy",
    "/apps/shop/restart",
    "/apps/shop/cancel",
    "/apps/shop/rollback/1",
    "/apps/shop/env",
    "/apps/shop/env/delete",
    "/apps/shop/env/bulk",
    "/apps/shop/domains",
    "/apps/shop/domains/remove",
    "/apps/shop/settings/build",
    "/apps/shop/settings/run",
    "/apps/shop/scale",
    "/apps/shop/github",
    "/apps/shop/notifications",
    "/apps/shop/notifications/test",
    "/apps/shop/notifications/remove",
    "/apps/shop/delete",
]


@pytest.fixture
def shop(client: TestClient, auth: dict[str, str], admin: str) -> str:  # noqa: F811
    r = client.post(
        "/api/v1/apps", json={"name": "shop", "repo_url": "https://github.com/o/r.git"}, headers=auth
    )
    assert r.status_code == 201
    return "shop"


@pytest.fixture
def signed(client: TestClient, shop: str) -> str:
    assert sign_in(client).status_code == 303
    return csrf_of(client.get("/apps/shop/settings").text)


def post(client: TestClient, path: str, csrf: str, /, **data: str):  # noqa: ANN201
    return client.post(path, data={"csrf": csrf, **data}, follow_redirects=False)


def state(engine: Engine) -> tuple:
    """What a refused form must leave as it was."""
    with Session(engine) as s:
        app = s.exec(select(App)).one().model_dump(exclude={"updated_at"})
        env = sorted((e.key, e.value, e.secret, e.scope) for e in s.exec(select(EnvVar)).all())
    return app, env, len(jobs(engine))


def test_every_page_needs_a_session_and_every_form_its_token(
    client: TestClient, shop: str, engine: Engine
) -> None:
    for path in PAGES:
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
    before = state(engine)
    for path in FORMS:
        r = client.post(path, data={"csrf": "x"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    sign_in(client)
    for path in FORMS:
        r = client.post(path, data={"csrf": "forged", "confirm": "shop", "key": "A", "value": "1"})
        assert r.status_code == 403 and "form expired" in r.text, path
    assert state(engine) == before


def test_pages_render_and_errors_are_html(client: TestClient, signed: str, engine: Engine) -> None:
    release(engine, 1, commit_message="first", trigger="push")
    for path in PAGES:
        if "stream" in path:
            continue
        r = client.get(path)
        assert r.status_code == 200 and "Traceback" not in r.text, path
    r = client.get("/apps/shop")
    assert r.headers["content-security-policy"].startswith("default-src 'self'")
    assert r.headers["x-frame-options"] == "DENY"
    assert "<script>" not in r.text  # no inline script: the policy allows files from /static only
    assert "Containers are not shown" in r.text  # no agent here: said, not a crash
    missing = client.get("/apps/nope")
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
    assert "no app named" in missing.text.lower() or "nope" in missing.text
    assert client.get("/no/such/page").status_code == 404
    assert "text/html" in client.get("/no/such/page").headers["content-type"]
    assert client.get("/api/v1/apps/nope").headers["content-type"] == "application/json"
    js = client.get("/static/htmx.min.js")
    assert js.status_code == 200 and "htmx" in js.text[:200]
    assert client.get("/static/paas.css").status_code == 200


def test_the_session_cookie_is_secure_over_https(client: TestClient, admin: str) -> None:  # noqa: F811
    plain = sign_in(client)
    assert "secure" not in plain.headers["set-cookie"].lower()
    tls = TestClient(client.app, base_url="https://paas.apps.test")
    r = sign_in(tls)
    assert r.status_code == 303 and "; secure" in r.headers["set-cookie"].lower()


def test_redeploy_restart_and_cancel(client: TestClient, signed: str, engine: Engine) -> None:
    r = post(client, "/apps/shop/restart", signed)
    assert r.status_code == 303
    assert "has no live release yet" in client.get(r.headers["location"]).text  # refused, said
    r = post(client, "/apps/shop/deploy", signed)
    assert r.status_code == 303 and r.headers["location"] == "/apps/shop/activity"
    page = client.get("/apps/shop/activity").text
    assert "Deploying the head of main" in page and "Cancel the running deploy" in page
    assert 'hx-trigger="every 3s"' in page  # the table refreshes while it runs
    (job,) = jobs(engine)
    assert job.kind == "deploy" and job.state == JobState.queued
    post(client, "/apps/shop/cancel", signed)
    assert "Cancelled the queued deploy" in client.get("/apps/shop/activity").text
    assert jobs(engine)[0].state == JobState.cancelled
    post(client, "/apps/shop/cancel", signed)
    assert "has no deploy running or queued" in client.get("/apps/shop/activity").text


def test_roll_back_from_activity_with_a_confirmation(
    client: TestClient, signed: str, engine: Engine, auth: dict[str, str]
) -> None:
    set_env(client, auth, GREETING="one")
    release(engine, 1, commit_message="first", trigger="push")
    set_env(client, auth, GREETING="two")
    release(engine, 2, commit_message="second", trigger="push")
    page = client.get("/apps/shop/activity").text
    assert 'href="/apps/shop/rollback/1"' in page and 'href="/apps/shop/rollback/2"' not in page  # v2 is live
    confirm = client.get("/apps/shop/rollback/1").text
    assert (
        "Roll back shop to v1?" in confirm and "pinned" in confirm and "migrations are not undone" in confirm
    )
    assert jobs(engine) == []  # looking changes nothing
    refused = post(client, "/apps/shop/rollback/2", signed)
    assert refused.status_code == 409 and "already live" in refused.text
    r = post(client, "/apps/shop/rollback/1", signed)
    assert r.status_code == 303
    assert "Rolling back to v1" in client.get("/apps/shop/activity").text
    (job,) = jobs(engine)
    assert job.kind == "rollback" and job.payload["source_version"] == 1
    env = client.get("/api/v1/apps/shop/env", headers=auth).json()
    assert [(e["key"], e["value"]) for e in env] == [("GREETING", "one")]
    assert client.get("/apps/shop/rollback/9").status_code == 404


def test_a_running_release_log_streams_as_server_sent_events(
    client: TestClient, signed: str, engine: Engine, settings
) -> None:  # noqa: ANN001
    release(engine, 1, status="failed", live=False)
    log = settings.logs_dir / "shop" / "v1.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes("==> build\nÜber-step\n".encode())
    with client.stream("GET", "/apps/shop/releases/1/stream") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        body = "".join(r.iter_text())
    events = [e for e in body.split("\n\n") if e]
    assert json.loads(events[0].split("data: ", 1)[1]) == "==> build\nÜber-step\n"
    assert f"id: {log.stat().st_size}" in events[0]
    assert events[-1].startswith("event: end")
    with client.stream("GET", "/apps/shop/releases/1/stream", headers={"Last-Event-ID": "10"}) as r:
        resumed = "".join(r.iter_text())
    assert json.loads(resumed.split("\n\n")[0].split("data: ", 1)[1]) == "Über-step\n"
    with client.stream("GET", "/apps/shop/logs/stream?process=web") as r:
        problem = "".join(r.iter_text())
    assert problem.startswith("event: problem") and "agent does not answer" in problem


def test_env_vars_add_edit_encrypt_delete(client: TestClient, signed: str, engine: Engine) -> None:
    r = post(client, "/apps/shop/env", signed, form="add", key="GREETING", value="hello", scope="run")
    assert r.status_code == 303 and r.headers["location"] == "/apps/shop/settings#env"
    page = client.get("/apps/shop/settings").text
    assert "Nothing is live yet" in page and "<code>hello</code>" in page
    r = post(client, "/apps/shop/env", signed, form="add", key="API_KEY", value="s3cr3t-v4lue", encrypt="1")
    page = client.get("/apps/shop/settings").text
    assert "s3cr3t-v4lue" not in page and "encrypted" in page and 'id="env-API_KEY"' in page
    with Session(engine) as s:
        row = s.exec(select(EnvVar).where(EnvVar.key == "API_KEY")).one()
        assert row.secret and "s3cr3t" not in row.value
    post(client, "/apps/shop/env", signed, form="edit", key="GREETING", value="hi", encrypt="1")
    assert "hi</code>" not in client.get("/apps/shop/settings").text  # GREETING is write-only now
    release(engine, 1)
    post(client, "/apps/shop/env/delete", signed, key="GREETING")
    page = client.get("/apps/shop/settings").text
    assert "A new release with these values is rolling out" in page and 'id="env-GREETING"' not in page
    assert [j.kind for j in jobs(engine)] == ["release"]


def test_env_errors_are_shown_next_to_the_field_and_change_nothing(
    client: TestClient, signed: str, engine: Engine
) -> None:
    before = state(engine)
    r = post(client, "/apps/shop/env", signed, form="add", key="9BAD", value="kept value")
    assert r.status_code == 422 and 'id="error-add-key"' in r.text and 'value="kept value"' in r.text
    assert 'value="9BAD"' in r.text
    r = post(client, "/apps/shop/env", signed, form="add", key="PORT", value="1")
    assert r.status_code == 422 and "reserved" in r.text
    r = post(client, "/apps/shop/env", signed, form="add", key="TOKEN", value="x" * 70000, encrypt="1")
    assert r.status_code == 422 and 'id="error-add-value"' in r.text and "x" * 1000 not in r.text
    assert "enter the value again" in r.text
    r = post(client, "/apps/shop/env/bulk", signed, dotenv="GOOD=1\nthis is not a line\n")
    assert r.status_code == 422 and 'id="error-bulk-dotenv"' in r.text and "line 2" in r.text
    assert "this is not a line" in r.text  # the text is kept to be mended
    r = post(client, "/apps/shop/env/bulk", signed, dotenv="PW=hunter2hunter2\n=x\n", encrypt="1")
    assert r.status_code == 422 and "hunter2hunter2" not in r.text
    set_env_ui = post(client, "/apps/shop/env", signed, form="add", key="MODE", value="calm")
    assert set_env_ui.status_code == 303
    before = state(engine)
    r = post(client, "/apps/shop/env", signed, form="edit", key="MODE", value="loud\x00")
    assert r.status_code == 422 and 'id="error-edit-value"' in r.text and "NUL character" in r.text
    assert "<details open>" in r.text and 'value="loud\x00"' in r.text  # the edit stays open, typed text kept
    post(client, "/apps/shop/env/delete", signed, key="MISSING")
    assert "MISSING was not deleted" in client.get("/apps/shop/settings").text
    assert state(engine) == before


def test_bulk_env_editor(client: TestClient, signed: str, engine: Engine) -> None:
    r = post(client, "/apps/shop/env/bulk", signed, dotenv='A=1\nB="two words"\n# a comment\n')
    assert r.status_code == 303
    page = client.get("/apps/shop/settings").text
    assert "<code>two words</code>" in page
    assert "B=&#34;two words&#34;" in page  # the editor shows the env as a .env file
    assert len(jobs(engine)) == 0  # nothing live: staged


def test_domains_settings_and_delete(client: TestClient, signed: str, engine: Engine) -> None:
    before = state(engine)
    r = post(client, "/apps/shop/domains", signed, hostname="*.example.com")
    assert (
        r.status_code == 422 and 'id="error-domain-hostname"' in r.text and 'value="*.example.com"' in r.text
    )
    r = post(
        client, "/apps/shop/settings/build", signed, branch="a..b", source_dir="", dockerfile="Dockerfile"
    )
    assert r.status_code == 422 and 'id="error-build-branch"' in r.text and 'value="a..b"' in r.text
    r = post(
        client,
        "/apps/shop/settings/run",
        signed,
        run_command="",
        port="99999",
        health_path="/up",
        health_interval="1",
        health_timeout="5",
        health_retries="60",
    )
    assert r.status_code == 422 and 'id="error-run-port"' in r.text and 'value="99999"' in r.text
    r = post(client, "/apps/shop/delete", signed, confirm="shoe")
    assert r.status_code == 422 and "Type shop exactly" in r.text
    assert state(engine) == before

    r = post(client, "/apps/shop/domains", signed, hostname="WWW.Example.com")
    assert r.status_code == 303
    assert "www.example.com" in client.get("/apps/shop/settings").text
    post(client, "/apps/shop/domains/remove", signed, hostname="www.example.com")
    assert "Removed www.example.com" in client.get("/apps/shop/settings").text
    fields = dict(run_command="uvicorn app:app --port $PORT", port="8080", health_path="/up")
    r = post(client, "/apps/shop/settings/run", signed, **fields, health_retries="30")
    assert r.status_code == 303
    post(
        client, "/apps/shop/settings/build", signed, branch="prod", source_dir="svc", dockerfile="Dockerfile"
    )
    with Session(engine) as s:
        app = s.exec(select(App)).one()
        assert (app.port, app.health_path, app.health_retries, app.branch, app.source_dir) == (
            8080,
            "/up",
            30,
            "prod",
            "svc",
        )
        assert app.run_command == "uvicorn app:app --port $PORT" and app.health_interval == 1.0
    r = post(client, "/apps/shop/delete", signed, confirm="shop")
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert "Deleting shop" in client.get("/").text
    assert jobs(engine)[-1].kind == "delete"


def test_scale_from_settings(client: TestClient, signed: str, engine: Engine) -> None:
    release(engine, 1, procfile={"web": "serve", "worker": "work"})
    page = client.get("/apps/shop/settings").text
    assert 'name="worker"' in page and 'name="web"' in page
    r = post(client, "/apps/shop/scale", signed, web="0", worker="1")
    assert r.status_code == 422 and "web needs at least 1 container" in r.text
    r = post(client, "/apps/shop/scale", signed, web="two", worker="1")
    assert r.status_code == 422 and "whole numbers" in r.text
    assert jobs(engine) == []
    r = post(client, "/apps/shop/scale", signed, web="2", worker="1")
    assert r.status_code == 303
    with session_scope(engine) as s:
        assert s.exec(select(App)).one().scale == {"web": 2}
    assert [j.kind for j in jobs(engine)] == ["release"]
    assert isinstance(jobs(engine)[0], Job)


def test_github_and_notifications_in_settings_never_show_what_was_typed(
    client: TestClient, signed: str, engine: Engine
) -> None:
    token = "github_pat_" + "uiCanary" * 5
    url = "discord://1234567890/uiCanaryWebhookToken"
    r = post(client, "/apps/shop/github", signed, **{"token": token, "repo": "", "action": "save"})
    assert r.status_code == 303 and r.headers["location"].endswith("/settings#github")
    page = client.get("/apps/shop/settings").text
    assert "<strong>set</strong>" in page and "o/r" in page and token not in page
    # refused: nothing saved, the token not put back in the page
    before = state(engine)
    bad = post(
        client, "/apps/shop/github", signed, token="short", repo="", environment="prod;", action="save"
    )
    assert bad.status_code == 422 and "is not a GitHub token" in bad.text and "short" not in bad.text
    assert state(engine) == before
    r = post(client, "/apps/shop/notifications", signed, url=url, scope="app", **{"ev-deploy.failed": "1"})
    assert r.status_code == 303
    page = client.get("/apps/shop/settings").text
    assert "discord://****oken" in page and "deploy.failed" in page and "uiCanary" not in page
    refused = post(client, "/apps/shop/notifications", signed, url="not a url", scope="app")
    assert refused.status_code == 422 and "Apprise URL" in refused.text and "not a url" not in refused.text
    with Session(engine) as s:
        from paas.models import NotifyTarget

        target = s.exec(select(NotifyTarget)).one()
    assert target.events == ["deploy.failed"] and target.app_id is not None
    # a test needs the agent, which does not run here: said, nothing changed
    r = post(client, "/apps/shop/notifications/test", signed, id=str(target.id))
    assert r.status_code == 303 and "agent" in client.get("/apps/shop/settings").text
    assert post(client, "/apps/shop/notifications/remove", signed, id=str(target.id)).status_code == 303
    assert "No notification targets yet" in client.get("/apps/shop/settings").text
    r = post(client, "/apps/shop/github", signed, action="remove")
    assert "<strong>not set</strong>" in client.get("/apps/shop/settings").text
