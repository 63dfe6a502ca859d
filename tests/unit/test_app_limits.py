"""Per-app container limits through the API, the CLI and the UI's Run
settings, and what the pipeline hands the engine (the engine's own
enforcement is in tests/integration/test_limits.py)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from agent.docker_engine import Limits
from agent.steps import limits
from paas.db import session_scope
from paas.models import App
from paas.settings import Settings
from tests.unit.cli_support import run
from tests.unit.test_ui import admin  # noqa: F401
from tests.unit.test_ui_app import post, shop, signed, state  # noqa: F401  (fixtures)

REPO = "https://github.com/o/r.git"


def test_the_api_keeps_an_apps_limits_and_refuses_bad_ones(client: TestClient, auth: dict[str, str]) -> None:
    body = {"name": "shop", "repo_url": REPO, "memory": "256M", "cpus": 0.5, "pids": 128}
    r = client.post("/api/v1/apps", json=body, headers=auth)
    assert r.status_code == 201, r.text
    assert (r.json()["memory"], r.json()["cpus"], r.json()["pids"]) == ("256m", 0.5, 128)
    for bad in ({"memory": "lots"}, {"memory": "8m"}, {"cpus": 0}, {"pids": 3}, {"memory": None}):
        refused = client.patch("/api/v1/apps/shop", json=bad, headers=auth)
        assert refused.status_code == 422, (bad, refused.text)
    cleared = client.patch("/api/v1/apps/shop", json={"memory": "", "cpus": None, "pids": None}, headers=auth)
    assert (cleared.json()["memory"], cleared.json()["cpus"], cleared.json()["pids"]) == ("", None, None)


def test_the_cli_sets_and_clears_them(client: TestClient, auth: dict[str, str], env: dict[str, str]) -> None:
    assert (
        client.post("/api/v1/apps", json={"name": "shop", "repo_url": REPO}, headers=auth).status_code == 201
    )
    code, out = run("apps", "set", "shop", "--memory", "1g", "--cpus", "2", "--pids", "64", env=env)
    assert code == 0, out
    shown = client.get("/api/v1/apps/shop", headers=auth).json()
    assert (shown["memory"], shown["cpus"], shown["pids"]) == ("1g", 2.0, 64)
    code, out = run("apps", "set", "shop", "--memory", "", "--cpus", "0", "--pids", "0", env=env)
    assert code == 0, out
    shown = client.get("/api/v1/apps/shop", headers=auth).json()
    assert (shown["memory"], shown["cpus"], shown["pids"]) == ("", None, None)


def test_the_run_settings_form(client: TestClient, signed: str, engine: Engine) -> None:  # noqa: F811
    page = client.get("/apps/shop/settings").text
    assert "Memory per container" in page and "the server&#39;s 512m" in page
    before = state(engine)
    r = post(client, "/apps/shop/settings/run", signed, memory="lots", cpus="1", pids="100")
    assert r.status_code == 422 and 'id="error-run-memory"' in r.text and 'value="lots"' in r.text
    assert state(engine) == before
    r = post(client, "/apps/shop/settings/run", signed, memory="300M", cpus="0.25", pids="100")
    assert r.status_code == 303, r.text
    with session_scope(engine) as session:
        app = session.exec(select(App)).one()
        assert (app.memory, app.cpus, app.pids) == ("300m", 0.25, 100)
    assert 'value="300m"' in client.get("/apps/shop/settings").text


def test_the_pipeline_gives_each_container_the_apps_limits_else_the_servers(settings: Settings) -> None:
    plain = App(name="shop", repo_url=REPO, webhook_secret="x")
    assert limits(settings, plain) == Limits(memory=512 << 20, nano_cpus=1_000_000_000, pids=512)
    own = App(name="shop", repo_url=REPO, webhook_secret="x", memory="2g", cpus=0.5, pids=64)
    assert limits(settings, own) == Limits(memory=2 << 30, nano_cpus=500_000_000, pids=64)
