"""Env vars through the REST API: encryption at rest, write-only secrets,
one release per change, bad input that changes nothing, and key rotation.

A fresh database and fresh key files per test; the agent is not running, so
"a release is queued" is checked on the job rows it would claim.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from paas import crypto
from paas.crypto import DecryptError, Keyring, env_purpose
from paas.db import session_scope
from paas.env_snapshots import open_snapshot, snapshot_env
from paas.envvars import parse_dotenv
from paas.errors import InvalidInput
from paas.github import sign
from paas.key_rotation import rotate_keys
from paas.models import App, Deployment, EnvVar, Event, Job, JobState
from paas.settings import Settings

REPO = "https://github.com/octo/shop.git"
SECRET = "sk_live_c4n4ry_0123456789"  # noqa: S105  (a canary, not a credential)


@pytest.fixture
def shop(client: TestClient, auth: dict[str, str]) -> dict[str, Any]:
    r = client.post("/api/v1/apps", json={"name": "shop", "repo_url": REPO}, headers=auth)
    assert r.status_code == 201
    return dict(r.json())


def make_live(engine: Engine, name: str = "shop") -> None:
    """Record a live release, as the agent does after a switch."""
    with session_scope(engine) as s:
        app = s.exec(select(App).where(App.name == name)).one()
        dep = Deployment(app_id=app.id, version=1, status="succeeded", image=f"paas/{name}:v1")  # type: ignore[arg-type]
        dep.env_version = app.env_version
        s.add(dep)
        s.flush()
        app.current_deployment_id = dep.id
        s.add(app)


def patch(client: TestClient, auth: dict[str, str], body: dict[str, Any], app: str = "shop") -> Any:
    return client.patch(f"/api/v1/apps/{app}/env", json=body, headers=auth)


def state(engine: Engine) -> tuple[Any, ...]:
    """Everything a change could touch."""
    with Session(engine) as s:
        return (
            sorted((r.key, r.value, r.secret, r.scope) for r in s.exec(select(EnvVar)).all()),
            [a.env_version for a in s.exec(select(App)).all()],
            len(s.exec(select(Job)).all()),
            len(s.exec(select(Event)).all()),
        )


def test_values_are_encrypted_at_rest_and_secrets_never_come_back(
    client: TestClient, auth: dict[str, str], engine: Engine, settings: Settings, shop: dict[str, Any]
) -> None:
    r = patch(
        client,
        auth,
        {
            "set": [
                {"key": "GREETING", "value": "hello-canary"},
                {"key": "API_TOKEN", "value": SECRET, "secret": True},
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert SECRET not in r.text
    listed = {v["key"]: v for v in client.get("/api/v1/apps/shop/env", headers=auth).json()}
    assert listed["GREETING"]["value"] == "hello-canary" and listed["GREETING"]["secret"] is False
    assert listed["API_TOKEN"]["value"] is None and listed["API_TOKEN"]["secret"] is True
    assert listed["API_TOKEN"]["updated_by"] == "token:tests"
    export = client.get("/api/v1/apps/shop/env/export", headers=auth).text
    assert 'GREETING="hello-canary"' in export and "# API_TOKEN=********" in export and SECRET not in export

    with Session(engine) as s:
        rows = {r.key: r for r in s.exec(select(EnvVar)).all()}
        app = s.exec(select(App)).one()
    assert rows["GREETING"].value.startswith("f1:") and "hello-canary" not in rows["GREETING"].value
    assert rows["API_TOKEN"].value.startswith("s2:") and SECRET not in rows["API_TOKEN"].value
    assert app.webhook_secret.startswith("f1:") and shop["webhook_secret"] not in app.webhook_secret
    raw = Path(settings.db_url.removeprefix("sqlite:///")).read_bytes()
    for value in (b"hello-canary", SECRET.encode(), shop["webhook_secret"].encode()):
        assert value not in raw
    # the web process's keyring cannot open the secret; the agent's can
    with pytest.raises(DecryptError):
        client.app.state.keyring.decrypt(rows["API_TOKEN"].value)  # type: ignore[attr-defined]
    agent = Keyring(settings.keys_dir, private=True)
    assert agent.decrypt(rows["API_TOKEN"].value, purpose=env_purpose("shop", "API_TOKEN")) == SECRET


def test_a_secret_can_be_replaced_and_stays_secret(
    client: TestClient, auth: dict[str, str], engine: Engine, settings: Settings, shop: dict[str, Any]
) -> None:
    patch(client, auth, {"set": [{"key": "API_TOKEN", "value": "one", "secret": True}]})
    r = patch(client, auth, {"set": [{"key": "API_TOKEN", "value": "two"}]})  # no flag: keeps secret
    assert r.json()["env"][0]["secret"] is True and r.json()["env"][0]["value"] is None
    with Session(engine) as s:
        row = s.exec(select(EnvVar)).one()
    agent = Keyring(settings.keys_dir, private=True)
    assert agent.decrypt(row.value, purpose=env_purpose("shop", row.key)) == "two"


def test_the_audit_trail_names_keys_never_values(
    client: TestClient, auth: dict[str, str], engine: Engine, shop: dict[str, Any]
) -> None:
    patch(
        client,
        auth,
        {"set": [{"key": "A", "value": "val-a-canary"}, {"key": "B", "value": SECRET, "secret": True}]},
    )
    patch(client, auth, {"unset": ["A"]})
    with Session(engine) as s:
        events = [e for e in s.exec(select(Event)).all() if e.action == "env.change"]
    assert [e.actor for e in events] == ["token:tests", "token:tests"]
    assert "A (run)" in events[0].detail and "B (secret, run)" in events[0].detail
    assert "unset A" in events[1].detail
    for e in events:
        assert "val-a-canary" not in e.detail and SECRET not in e.detail


def test_a_change_to_a_live_app_queues_one_release_and_no_restart_stages_it(
    client: TestClient, auth: dict[str, str], engine: Engine, shop: dict[str, Any]
) -> None:
    staged = patch(client, auth, {"set": [{"key": "A", "value": "1"}]}).json()
    assert staged["staged"] is True and staged["job"] is None  # nothing live yet: the first deploy uses it
    make_live(engine)
    bulk = patch(
        client,
        auth,
        {"set": [{"key": "A", "value": "2"}, {"key": "B", "value": "3"}], "unset": []},
    ).json()
    assert bulk["staged"] is False and bulk["job"]["kind"] == "release"
    again = patch(client, auth, {"set": [{"key": "C", "value": "4"}]}).json()
    with Session(engine) as s:
        jobs = s.exec(select(Job).order_by(Job.id)).all()  # type: ignore[arg-type]
    # the newer change supersedes the queued release: still one release to run
    assert [(j.kind, j.state) for j in jobs] == [("release", "superseded"), ("release", "queued")]
    assert again["job"]["id"] == jobs[1].id
    no_restart = patch(client, auth, {"set": [{"key": "D", "value": "5"}], "restart": False}).json()
    assert no_restart["staged"] is True and no_restart["job"] is None
    assert client.get("/api/v1/apps/shop", headers=auth).json()["env_staged"] is True


def test_a_queued_deploy_absorbs_an_env_change(
    client: TestClient, auth: dict[str, str], engine: Engine, shop: dict[str, Any]
) -> None:
    make_live(engine)
    deploy = client.post("/api/v1/apps/shop/deploy", json={}, headers=auth).json()
    result = patch(client, auth, {"set": [{"key": "A", "value": "1"}]}).json()
    assert result["job"]["id"] == deploy["id"] and result["job"]["kind"] == "deploy"
    release = patch(client, auth, {"set": [{"key": "B", "value": "2"}]}).json()["job"]
    assert release["id"] == deploy["id"]


def test_build_scope_warns_and_secrets_reach_builds_only_as_build_secrets(
    client: TestClient, auth: dict[str, str], engine: Engine, settings: Settings, shop: dict[str, Any]
) -> None:
    r = patch(client, auth, {"set": [{"key": "API_URL", "value": "https://api", "scope": "build"}]})
    assert r.status_code == 200 and "build arg" in r.json()["warnings"][0]
    r = patch(client, auth, {"set": [{"key": "TOKEN", "value": SECRET, "secret": True, "scope": "build"}]})
    assert r.status_code == 200 and "--mount=type=secret,id=TOKEN" in r.json()["warnings"][0]
    assert SECRET not in r.text
    index = {"key": "PIP_INDEX_URL", "value": SECRET, "secret": True, "scope": "both"}
    r = patch(client, auth, {"set": [index]})
    assert r.status_code == 200
    with session_scope(engine) as s:
        app = s.exec(select(App)).one()
        opened = open_snapshot(snapshot_env(s, app), Keyring(settings.keys_dir, private=True), app="shop")
    assert opened.build_args == {"API_URL": "https://api"}  # never a secret
    assert opened.build_secrets == {"TOKEN": SECRET, "PIP_INDEX_URL": SECRET}
    assert opened.run == {"PIP_INDEX_URL": SECRET} and opened.secret_keys == {"TOKEN", "PIP_INDEX_URL"}


def test_a_change_a_build_reads_rebuilds_the_live_commit_and_a_run_change_only_releases(
    client: TestClient, auth: dict[str, str], engine: Engine, shop: dict[str, Any]
) -> None:
    make_live(engine)
    with session_scope(engine) as s:
        dep = s.exec(select(Deployment)).one()
        dep.commit = "ab" * 20
        s.add(dep)
    job = patch(client, auth, {"set": [{"key": "MODE", "value": "calm"}]}).json()["job"]
    assert job["kind"] == "release"
    for change in (
        {"set": [{"key": "TOKEN", "value": SECRET, "secret": True, "scope": "build"}]},
        {"set": [{"key": "TOKEN", "value": SECRET + "2"}]},  # stays in build scope
        {"set": [{"key": "MODE", "value": "calm", "scope": "both"}]},
        {"set": [{"key": "MODE", "value": "calm", "scope": "run"}]},  # a build read it until now
        {"unset": ["TOKEN"]},
    ):
        body = patch(client, auth, change).json()
        assert body["job"]["kind"] == "deploy", change
    with session_scope(engine) as s:
        deploys = [j for j in s.exec(select(Job)).all() if j.kind == "deploy"]
        assert {(j.payload["commit"], j.payload["trigger"]) for j in deploys} == {("ab" * 20, "env")}
        assert not s.exec(select(App)).one().pinned


BAD_CHANGES = [
    ({"set": [{"key": "1BAD", "value": "v"}]}, "not a valid env var name"),
    ({"set": [{"key": "BAD-NAME", "value": "v"}]}, "not a valid env var name"),
    ({"set": [{"key": "", "value": "v"}]}, "not a valid env var name"),
    ({"set": [{"key": "PORT", "value": "80"}]}, "PORT is reserved"),
    ({"set": [{"key": "PAAS_TOKEN", "value": "v"}]}, "PAAS_TOKEN is reserved"),
    ({"set": [{"key": "BIG", "value": "x" * 40000}]}, "the value of BIG is 40000 bytes"),
    ({"set": [{"key": "NUL", "value": "a\x00b"}]}, "NUL"),
    ({"set": [{"key": "A", "value": "1"}, {"key": "A", "value": "2"}]}, "A given more than once"),
    ({"set": [{"key": "A", "value": "1"}], "unset": ["A"]}, "A given more than once"),
    ({}, "nothing to change"),
    ({"set": [{"key": "A", "value": "1", "scope": "everywhere"}]}, "scope"),
    ({"set": [{"key": "A", "value": "1", "colour": "red"}]}, "colour"),
    ({"unset": ["MISSING"]}, "shop has no env var MISSING"),
    ({"set": [{"key": "OK", "value": "1"}], "unset": ["MISSING"]}, "no env var MISSING"),
]


@pytest.mark.parametrize(("body", "message"), BAD_CHANGES)
def test_bad_changes_say_what_is_wrong_and_change_nothing(
    client: TestClient,
    auth: dict[str, str],
    engine: Engine,
    shop: dict[str, Any],
    body: dict[str, Any],
    message: str,
) -> None:
    patch(client, auth, {"set": [{"key": "KEEP", "value": "kept"}]})
    before = state(engine)
    r = patch(client, auth, body)
    assert r.status_code in (404, 422), r.text
    assert message in r.text
    assert state(engine) == before


def test_a_rejected_oversized_secret_is_not_echoed(
    client: TestClient, auth: dict[str, str], shop: dict[str, Any]
) -> None:
    value = "S3CR3T" * 6000
    r = patch(client, auth, {"set": [{"key": "BIG", "value": value, "secret": True}]})
    assert r.status_code == 422 and "S3CR3T" not in r.text
    r = client.patch(
        "/api/v1/apps/shop/env", content=b'{"set": [{"key": "A", "value": "S3CR3T"', headers=auth
    )
    assert r.status_code == 422 and "S3CR3T" not in r.text


def test_too_many_vars_is_refused(
    client: TestClient, auth: dict[str, str], engine: Engine, shop: dict[str, Any]
) -> None:
    body = {"set": [{"key": f"K{i}", "value": "v"} for i in range(300)]}
    assert patch(client, auth, body).status_code == 200
    before = state(engine)
    r = patch(client, auth, {"set": [{"key": f"J{i}", "value": "v"} for i in range(201)]})
    assert r.status_code == 422 and "at most 500 env vars" in r.text
    assert state(engine) == before


def test_the_env_endpoints_are_in_the_openapi_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/api/v1/apps/{name}/env"]) == {"get", "patch"}
    assert set(paths["/api/v1/apps/{name}/env/{key}"]) == {"delete"}
    assert set(paths["/api/v1/apps/{name}/env/import"]) == {"post"}
    assert set(paths["/api/v1/apps/{name}/env/export"]) == {"get"}
    assert {"404", "422"} <= set(paths["/api/v1/apps/{name}/env"]["patch"]["responses"])


def test_unset_one_with_delete(client: TestClient, auth: dict[str, str], shop: dict[str, Any]) -> None:
    patch(client, auth, {"set": [{"key": "A", "value": "1"}, {"key": "B", "value": "2"}]})
    r = client.delete("/api/v1/apps/shop/env/A", headers=auth)
    assert r.status_code == 200 and r.json()["removed"] == ["A"]
    assert [v["key"] for v in r.json()["env"]] == ["B"]
    assert client.delete("/api/v1/apps/shop/env/A", headers=auth).status_code == 404
    assert client.delete("/api/v1/apps/shop/env/PORT", headers=auth).status_code == 422
    assert client.get("/api/v1/apps/nope/env", headers=auth).status_code == 404


# .env import and export -------------------------------------------------------------------

TRICKY = {
    "PLAIN": "value",
    "SPACES": "  two  words  ",
    "QUOTES": "say \"hi\" and 'bye'",
    "HASH": "a # not a comment",
    "DOLLAR": "${HOME} and $PATH stay literal",
    "NEWLINES": "line one\nline two\r\nthree",
    "BACKSLASH": "C:\\path\\n not a newline",
    "EQUALS": "a=b=c",
    "UNICODE": "café ☕",
    "EMPTY": "",
}


def test_export_then_import_round_trips(
    client: TestClient, auth: dict[str, str], engine: Engine, shop: dict[str, Any]
) -> None:
    r = patch(
        client,
        auth,
        {
            "set": [{"key": k, "value": v} for k, v in TRICKY.items()]
            + [{"key": "S", "value": SECRET, "secret": True}]
        },
    )
    assert r.status_code == 200
    text = client.get("/api/v1/apps/shop/env/export", headers=auth).text
    assert dict(parse_dotenv(text)) == TRICKY  # the secret is a comment: re-import cannot clobber it
    client.post("/api/v1/apps", json={"name": "copy", "repo_url": REPO}, headers=auth)
    r = client.post("/api/v1/apps/copy/env/import", json={"dotenv": text}, headers=auth)
    assert r.status_code == 200, r.text
    assert {v["key"]: v["value"] for v in r.json()["env"]} == TRICKY


def test_import_reads_common_dotenv_syntax(
    client: TestClient, auth: dict[str, str], shop: dict[str, Any]
) -> None:
    text = "# comment\n\nexport A=1\nB='single'  # trailing\nC=\"double\"\r\nD=bare value\n"
    r = client.post("/api/v1/apps/shop/env/import", json={"dotenv": text, "secret": True}, headers=auth)
    assert r.status_code == 200, r.text
    assert [(v["key"], v["secret"]) for v in r.json()["env"]] == [
        ("A", True),
        ("B", True),
        ("C", True),
        ("D", True),
    ]


MALFORMED = [
    ("A=1\nthis is not a line\n", ".env line 2 is not KEY=VALUE"),
    ("A=1\nB\n", ".env line 2: B has no '='"),
    ("A=1\n1X=2\n", ".env line 2: '1X' is not a valid env var name"),
    ("PORT=1\n", ".env line 1: PORT is reserved"),
    ("A=1\nA=2\n", ".env line 2: A is already set on line 1"),
    ("A='unterminated\n", ".env line 1 is not KEY=VALUE"),
    ("# only a comment\n\n", "sets no variables"),
    ("A=" + "x" * 40000 + "\n", ".env line 1: the value of A is 40000 bytes"),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED)
def test_a_malformed_dotenv_names_the_line_and_changes_nothing(
    client: TestClient, auth: dict[str, str], engine: Engine, shop: dict[str, Any], text: str, message: str
) -> None:
    before = state(engine)
    r = client.post("/api/v1/apps/shop/env/import", json={"dotenv": text}, headers=auth)
    assert r.status_code == 422 and message in r.json()["detail"], r.text
    assert "not a line" not in r.text and "unterminated" not in r.text
    assert state(engine) == before


def test_parse_dotenv_rejects_nul() -> None:
    with pytest.raises(InvalidInput, match="NUL"):
        parse_dotenv("A=1\x00\n")


# key rotation ---------------------------------------------------------------------------------


def test_rotation_reencrypts_everything_and_drops_the_old_keys(
    client: TestClient, auth: dict[str, str], engine: Engine, settings: Settings, shop: dict[str, Any]
) -> None:
    patch(
        client,
        auth,
        {"set": [{"key": "G", "value": "general-1"}, {"key": "S", "value": SECRET, "secret": True}]},
    )
    make_live(engine)
    with session_scope(engine) as s:  # a release snapshot, as the agent takes it
        app = s.exec(select(App)).one()
        dep = s.exec(select(Deployment)).one()
        dep.env = snapshot_env(s, app)
        s.add(dep)
    old = crypto.load_keys(settings.keys_dir, private=True)
    web_keyring = client.app.state.keyring  # type: ignore[attr-defined]

    report = rotate_keys(engine, settings.keys_dir)

    assert (report.env_values, report.release_snapshots, report.webhook_secrets) == (2, 1, 1)
    new = crypto.load_keys(settings.keys_dir, private=True)
    assert len(new.fernet) == len(new.public) == len(new.private) == 1  # old keys gone from the files
    assert not set(new.fernet) & set(old.fernet)
    agent = Keyring(settings.keys_dir, private=True)
    stale = Keyring.from_material(old)
    with Session(engine) as s:
        rows = {r.key: r.value for r in s.exec(select(EnvVar)).all()}
        snapshot = s.exec(select(Deployment)).one().env
        hook = s.exec(select(App)).one().webhook_secret
    assert agent.decrypt(rows["G"]) == "general-1"
    assert agent.decrypt(rows["S"], purpose=env_purpose("shop", "S")) == SECRET  # still bound to S of shop
    assert open_snapshot(snapshot, agent, app="shop").run == {"G": "general-1", "S": SECRET}
    with pytest.raises(DecryptError, match="env var S of app shop"):
        agent.decrypt(rows["S"], purpose=env_purpose("shop", "G"))
    for value in (*rows.values(), hook, *(i["value"] for i in snapshot)):
        with pytest.raises(DecryptError):
            stale.decrypt(value)  # the old keys open nothing any more
    # the running web process re-read the files: it lists, exports and verifies webhooks
    assert client.get("/api/v1/apps/shop/env", headers=auth).json()[0]["value"] == "general-1"
    assert web_keyring.decrypt(rows["G"]) == "general-1"
    body = b'{"zen": "rotated"}'
    r = client.post(
        "/hooks/github/shop",
        content=body,
        headers={
            "X-GitHub-Event": "ping",
            "X-GitHub-Delivery": "after-rotation",
            "X-Hub-Signature-256": sign(shop["webhook_secret"], body),
        },
    )
    assert r.status_code == 200, r.text


def test_plain_webhook_secrets_from_before_encryption_are_encrypted_by_migrate(
    engine: Engine, settings: Settings
) -> None:
    from paas.key_rotation import encrypt_plain_webhook_secrets

    with session_scope(engine) as s:
        s.add(App(name="old", repo_url=REPO, webhook_secret="plain-secret-from-0001"))
    keyring = Keyring(settings.keys_dir, private=False)
    assert encrypt_plain_webhook_secrets(engine, keyring) == 1
    assert encrypt_plain_webhook_secrets(engine, keyring) == 0  # idempotent
    with Session(engine) as s:
        stored = s.exec(select(App)).one().webhook_secret
    assert stored.startswith("f1:") and keyring.decrypt(stored) == "plain-secret-from-0001"


def test_a_change_during_a_first_deploy_is_followed_by_a_release(
    client: TestClient, auth: dict[str, str], engine: Engine, shop: dict[str, Any]
) -> None:
    """The running first deploy may have taken the env before the change:
    a release follows it, so the change is never left staged unasked."""
    deploy = client.post("/api/v1/apps/shop/deploy", json={}, headers=auth).json()
    with session_scope(engine) as s:
        job = s.get(Job, deploy["id"])
        assert job is not None
        job.state = JobState.running  # as the agent's claim leaves it
        s.add(job)
    result = patch(client, auth, {"set": [{"key": "A", "value": "1"}]}).json()
    assert result["staged"] is False and result["job"]["kind"] == "release", result
    with Session(engine) as s:
        release = s.get(Job, result["job"]["id"])
        assert release is not None and release.state == JobState.queued
        assert release.payload["trigger"] == "env"
    asked = patch(client, auth, {"set": [{"key": "B", "value": "2"}], "restart": False}).json()
    assert asked["staged"] is True and asked["job"] is None
