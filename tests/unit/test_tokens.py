"""API token lifecycle (issue 15, item 4): list (never the token), revoke,
expiry, and a coarse last-used time; through the REST API and the server's
CLI."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from paas import tokens
from paas.db import session_scope
from paas.errors import PaasError
from paas.models import ApiToken, Event, utcnow
from paas.settings import Settings
from tests.unit.cli_support import run, server_env


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_list_shows_every_token_but_never_one(
    client: TestClient, auth: dict[str, str], engine: Engine
) -> None:
    with session_scope(engine) as session:
        ci = tokens.create_token(session, name="ci", lifetime=timedelta(days=90))
    listed = client.get("/api/v1/tokens", headers=auth)
    assert listed.status_code == 200
    rows = {r["name"]: r for r in listed.json()}
    assert set(rows) == {"tests", "ci"}
    assert rows["ci"]["prefix"] == ci[:12] and rows["ci"]["expires_at"] is not None
    assert rows["tests"]["expires_at"] is None and rows["tests"]["last_used_at"] is not None
    assert ci not in listed.text and auth["Authorization"].split()[1] not in listed.text


def test_a_revoked_token_fails_on_its_next_request(
    client: TestClient, auth: dict[str, str], engine: Engine
) -> None:
    with session_scope(engine) as session:
        ci = tokens.create_token(session, name="ci")
    assert client.get("/api/v1/apps", headers=_bearer(ci)).status_code == 200
    assert client.delete("/api/v1/tokens/ci", headers=auth).status_code == 204
    assert client.get("/api/v1/apps", headers=_bearer(ci)).status_code == 401
    assert client.get("/api/v1/apps", headers=auth).status_code == 200  # the others keep working
    assert client.delete("/api/v1/tokens/ci", headers=auth).status_code == 404
    with session_scope(engine) as session:
        assert session.exec(select(Event).where(Event.action == "token.revoke")).one().actor == "token:tests"


def test_an_expired_token_fails(client: TestClient, engine: Engine) -> None:
    with session_scope(engine) as session:
        short = tokens.create_token(session, name="short", lifetime=timedelta(hours=1))
    assert client.get("/api/v1/apps", headers=_bearer(short)).status_code == 200
    with session_scope(engine) as session:
        row = session.exec(select(ApiToken).where(ApiToken.name == "short")).one()
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
    assert client.get("/api/v1/apps", headers=_bearer(short)).status_code == 401
    with session_scope(engine) as session, pytest.raises(Exception, match="lifetime must be positive"):
        tokens.create_token(session, name="never", lifetime=timedelta(0))


def test_last_used_is_written_at_most_once_a_minute(
    client: TestClient, auth: dict[str, str], engine: Engine
) -> None:
    def last_used() -> object:
        with session_scope(engine) as session:
            return session.exec(select(ApiToken)).one().last_used_at

    client.get("/api/v1/apps", headers=auth)
    first = last_used()
    client.get("/api/v1/apps", headers=auth)
    assert last_used() == first
    with session_scope(engine) as session:
        row = session.exec(select(ApiToken)).one()
        row.last_used_at = utcnow() - timedelta(minutes=2)
        session.add(row)
    client.get("/api/v1/apps", headers=auth)
    assert last_used() > first  # type: ignore[operator]


def test_the_server_cli_creates_lists_and_revokes(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in server_env(settings).items():
        monkeypatch.setenv(key, value)
    code, token = run("admin", "create-token", "deploy-bot", "--expires", "90d")
    assert code == 0 and token.strip().startswith("paas_"), token
    with pytest.raises(PaasError, match="--expires takes a lifetime such as 90d"):
        run("admin", "create-token", "x", "--expires", "soon")
    code, out = run("admin", "tokens", "list", "--json")
    listed = {r["name"]: r for r in json.loads(out)}
    assert set(listed) == {"deploy-bot"} and listed["deploy-bot"]["expires_at"] is not None
    assert token.strip() not in out
    with pytest.raises(PaasError, match="pass --yes"):
        run("admin", "tokens", "revoke", "deploy-bot")
    code, out = run("admin", "tokens", "revoke", "deploy-bot", "--yes")
    assert code == 0 and "revoked 1 token(s) named deploy-bot" in out, out
    with session_scope(engine) as session:
        assert session.exec(select(ApiToken)).all() == []
