"""Domains through the REST API and the CLI: validation, uniqueness across
apps, the default hostname, and the certificate state shown."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from agent.nginx import app_site
from paas.db import session_scope
from paas.domains import ensure_defaults
from paas.errors import InvalidInput
from paas.models import App, Domain
from paas.settings import Settings
from tests.unit.cli_support import run
from tests.unit.test_scale_api import assert_one_line_failure

REPO = "https://github.com/octo/shop.git"


@pytest.fixture
def two_apps(client: TestClient, auth: dict[str, str]) -> None:
    for name in ("shop", "blog"):
        assert (
            client.post("/api/v1/apps", json={"name": name, "repo_url": REPO}, headers=auth).status_code
            == 201
        )


def test_add_list_and_remove(client: TestClient, auth: dict[str, str], two_apps: None) -> None:
    r = client.post("/api/v1/apps/shop/domains", json={"hostname": "WWW.Shop.example."}, headers=auth)
    assert r.status_code == 201, r.text
    assert r.json()["hostname"] == "www.shop.example" and r.json()["https"] is False
    assert r.json()["cert_state"] == "disabled"  # no PAAS_ACME_EMAIL in these settings
    r = client.post("/api/v1/apps/shop/domains", json={"hostname": "bücher.example"}, headers=auth)
    assert r.json()["hostname"] == "xn--bcher-kva.example"
    listed = client.get("/api/v1/apps/shop/domains", headers=auth).json()
    assert [(d["hostname"], d["is_default"]) for d in listed] == [
        ("shop.apps.test", True),
        ("www.shop.example", False),
        ("xn--bcher-kva.example", False),
    ]
    assert client.delete("/api/v1/apps/shop/domains/www.shop.example", headers=auth).status_code == 204
    hosts = [d["hostname"] for d in client.get("/api/v1/apps/shop/domains", headers=auth).json()]
    assert hosts == ["shop.apps.test", "xn--bcher-kva.example"]


@pytest.mark.parametrize(
    ("hostname", "status", "message"),
    [
        ("*.example.com", 422, "wildcards are not supported"),
        ("10.0.0.1", 422, "not an IP address"),
        ("localhost", 422, "not a valid hostname"),
        ("bad_name.example", 422, "not a valid hostname"),
        ("-x.example.com", 422, "not a valid hostname"),
        ("a" * 64 + ".example.com", 422, "not a valid hostname"),
        ("blog.apps.test", 422, "under PAAS_DOMAIN"),
        ("paas.apps.test", 409, "the control plane's own hostname"),
        ("www.blog.example", 409, "already served for app 'blog'"),
    ],
)
def test_refusals_name_the_problem_and_change_nothing(
    client: TestClient, auth: dict[str, str], two_apps: None, hostname: str, status: int, message: str
) -> None:
    assert (
        client.post(
            "/api/v1/apps/blog/domains", json={"hostname": "www.blog.example"}, headers=auth
        ).status_code
        == 201
    )
    r = client.post("/api/v1/apps/shop/domains", json={"hostname": hostname}, headers=auth)
    assert r.status_code == status and message in r.text, r.text
    assert [d["hostname"] for d in client.get("/api/v1/apps/shop/domains", headers=auth).json()] == [
        "shop.apps.test"
    ]


def test_the_default_hostname_stays_and_unknown_ones_are_404(
    client: TestClient, auth: dict[str, str], two_apps: None
) -> None:
    r = client.delete("/api/v1/apps/shop/domains/shop.apps.test", headers=auth)
    assert r.status_code == 409 and "default hostname" in r.text
    r = client.delete("/api/v1/apps/shop/domains/nope.example", headers=auth)
    assert r.status_code == 404 and "not served at nope.example" in r.text


def test_cli_domains(
    env: dict[str, str], client: TestClient, auth: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        client.post("/api/v1/apps", json={"name": "shop", "repo_url": REPO}, headers=auth).status_code == 201
    )
    code, out = run("domains", "add", "shop", "www.shop.example", env=env)
    assert code == 0 and "will be served at www.shop.example" in out
    code, out = run("domains", "list", "shop", "--json", env=env)
    assert code == 0 and out.startswith("["), repr(out)
    assert [d["hostname"] for d in json.loads(out)] == ["shop.apps.test", "www.shop.example"]
    code, out = run("domains", "list", "shop", env=env)
    assert code == 0 and "www.shop.example" in out and "default" in out
    code, out = run("domains", "remove", "shop", "www.shop.example", env=env)
    assert code == 0 and "no longer served" in out
    assert_one_line_failure(
        ("domains", "add", "shop", "*.shop.example"), env, capsys, "wildcards are not supported"
    )


def test_every_domain_with_the_control_plane_first(
    client: TestClient, auth: dict[str, str], two_apps: None
) -> None:
    client.post("/api/v1/apps/shop/domains", json={"hostname": "www.shop.example"}, headers=auth)
    rows = client.get("/api/v1/domains", headers=auth).json()
    assert [(d["hostname"], d["app"]) for d in rows] == [
        ("paas.apps.test", ""),
        ("blog.apps.test", "blog"),
        ("shop.apps.test", "shop"),
        ("www.shop.example", "shop"),
    ]


def test_no_app_takes_the_control_planes_hostname(
    client: TestClient, auth: dict[str, str], settings: Settings, engine: Engine
) -> None:
    """An app named after the control host (paas.<domain>) is refused; a row
    for one written straight into the database (web taken over) gets neither
    the control plane's domain row nor an nginx site claiming its hostname."""
    r = client.post("/api/v1/apps", json={"name": "paas", "repo_url": REPO}, headers=auth)
    assert r.status_code == 409 and "reserved" in r.json()["detail"], r.text
    assert client.get("/api/v1/apps", headers=auth).json() == []

    with session_scope(engine) as session:
        session.add(App(name="paas", repo_url=REPO, webhook_secret="x"))
        session.flush()
        ensure_defaults(session, settings)
        control = session.exec(select(Domain).where(Domain.hostname == settings.control_host)).one()
        assert control.app_id is None
    with pytest.raises(InvalidInput, match="the control plane's own"):
        app_site(settings, app="paas", version=1, upstreams=("127.0.0.1:20001",))
