"""Issue 15, items 1 and 3: once the control plane has its certificate, the
URLs shown are https://, and plain HTTP from a non-loopback address carries
no credential: GETs are redirected, the rest refused and logged; webhooks and
probes work either way. (tests/integration/test_https_default.py does the
same through nginx, from a network namespace.)"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from paas import services
from paas.db import session_scope
from paas.domains import ensure_defaults
from paas.models import App, CertState, Domain
from paas.settings import Settings
from web.app import create_web_app

OUTSIDE = ("203.0.113.9", 40000)  # TEST-NET-3: never a loopback address


def issue_control_certificate(engine: Engine, settings: Settings) -> None:
    with session_scope(engine) as session:
        ensure_defaults(session, settings)
        row = session.exec(select(Domain).where(Domain.hostname == settings.control_host)).one()
        row.cert_state = CertState.issued
        session.add(row)


@pytest.fixture
def outside(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    """A client from a public address, over plain HTTP, not following redirects."""
    with TestClient(
        create_web_app(settings, engine=engine), client=OUTSIDE, follow_redirects=False
    ) as test_client:
        yield test_client


def test_without_a_certificate_plain_http_works_from_anywhere(
    outside: TestClient, auth: dict[str, str]
) -> None:
    assert outside.get("/api/v1/apps", headers=auth).status_code == 200
    assert outside.get("/login").status_code == 200


def test_with_a_certificate_a_token_over_plain_http_is_refused_and_logged(
    outside: TestClient,
    auth: dict[str, str],
    settings: Settings,
    engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    issue_control_certificate(engine, settings)
    with caplog.at_level(logging.WARNING, logger="paas.web"):
        refused = outside.get("/api/v1/apps", headers=auth)
        posted = outside.post("/login", data={"username": "a", "password": "b"})
    assert refused.status_code == 403 and posted.status_code == 403
    assert "https://paas.apps.test" in refused.json()["detail"]
    assert auth["Authorization"] not in caplog.text  # the log names the refusal, not the token
    lines = [r.getMessage() for r in caplog.records]
    assert any(f"GET /api/v1/apps from {OUTSIDE[0]} with an API token: revoke it" in m for m in lines)
    assert any(f"POST /login from {OUTSIDE[0]}" in m for m in lines)


def test_with_a_certificate_gets_are_redirected_and_webhooks_and_probes_still_work(
    outside: TestClient, settings: Settings, engine: Engine
) -> None:
    issue_control_certificate(engine, settings)
    page = outside.get("/apps/shop?tab=env")
    assert page.status_code == 301
    assert page.headers["location"] == "https://paas.apps.test/apps/shop?tab=env"
    assert outside.get("/healthz").status_code == 200
    hook = outside.post("/hooks/github/nosuchapp", content=b"{}", headers={"X-GitHub-Event": "ping"})
    assert hook.status_code not in (301, 403)  # reached the webhook route, which judges it


def test_loopback_and_https_clients_are_not_refused(
    settings: Settings, engine: Engine, auth: dict[str, str]
) -> None:
    issue_control_certificate(engine, settings)
    app = create_web_app(settings, engine=engine)
    with TestClient(app, client=("127.0.0.5", 1)) as local:
        assert local.get("/api/v1/apps", headers=auth).status_code == 200
    with TestClient(app, client=OUTSIDE, base_url="https://paas.apps.test") as secure:
        assert secure.get("/api/v1/apps", headers=auth).status_code == 200


def test_urls_switch_to_https_when_the_certificates_are_issued(
    client: TestClient, auth: dict[str, str], settings: Settings, engine: Engine
) -> None:
    created = client.post(
        "/api/v1/apps", json={"name": "shop", "repo_url": "https://github.com/o/shop"}, headers=auth
    )
    assert created.status_code == 201, created.text
    assert created.json()["webhook_url"] == "http://paas.apps.test/hooks/github/shop"
    assert created.json()["url"] == "http://shop.apps.test"
    issue_control_certificate(engine, settings)
    with session_scope(engine) as session:
        shop = session.exec(select(App).where(App.name == "shop")).one()
        own = session.exec(select(Domain).where(Domain.hostname == "shop.apps.test")).one()
        own.cert_state = CertState.issued
        session.add(own)
        session.flush()
        assert services.control_url(session, settings) == "https://paas.apps.test"
        assert services.app_public(session, app=shop, settings=settings).url == "https://shop.apps.test"
    shown = client.get("/api/v1/apps/shop", headers=auth).json()
    assert shown["webhook_url"] == "https://paas.apps.test/hooks/github/shop"
