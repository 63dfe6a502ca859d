"""The certificate manager's decisions with certbot replaced at the command
boundary (the real ACME flow, with Pebble, is tests/integration/test_tls.py):
preflight refusals ask nothing of the CA, CA failures back off and keep the
CA's words, a certificate that is not due is never requested again."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from agent import commands
from agent.certs import BACKOFF, CertManager
from agent.nginx import NginxSites
from agent.sites import Sites
from paas.db import session_scope
from paas.models import App, CertState, Domain, utcnow
from paas.settings import Settings, load_settings

CA_REFUSAL = """Saving debug log to /x/letsencrypt.log
Certbot failed to authenticate some domains (authenticator: webroot).
  Domain: www.shop.example
  Type:   unauthorized
  Detail: 127.0.0.1: Invalid response from http://www.shop.example/.well-known/acme-challenge/x: 404
Some challenges have failed.
"""


class FakeCertbot:
    def __init__(self, output: str = CA_REFUSAL, returncode: int = 1) -> None:
        self.calls: list[list[str]] = []
        self.output, self.returncode = output, returncode

    def __call__(self, args: list[str], **_kw: Any) -> commands.CommandResult:
        self.calls.append(args)
        return commands.CommandResult(tuple(args), self.returncode, self.output)


@pytest.fixture
def acme_settings(settings: Settings) -> Settings:
    return load_settings(
        _env_file=None,
        data_dir=settings.data_dir,
        domain=settings.domain,
        nginx_conf_dir=settings.nginx_conf_dir,
        keys_dir=settings.keys_dir,
        acme_email="ops@shop.example",
        public_ips="127.0.0.1",
    )


def no_sites(settings: Settings, engine: Engine) -> Sites:
    """Sites with no engine behind them: these tests never render an app's site."""
    return Sites(settings, engine, NginxSites(settings), None, "test")  # type: ignore[arg-type]


def manager(acme_settings: Settings, engine: Engine, certbot: FakeCertbot, **kw: Any) -> CertManager:
    m = CertManager(
        acme_settings, engine, NginxSites(acme_settings), no_sites(acme_settings, engine), runner=certbot
    )
    for name, value in kw.items():
        setattr(m, name, value)
    return m


def domain_row(engine: Engine, hostname: str = "www.shop.example", **kw: Any) -> int:
    with session_scope(engine) as s:
        app = App(name="shop", repo_url="/r", webhook_secret="x")
        s.add(app)
        s.flush()
        d = Domain(app_id=app.id, hostname=hostname, **kw)
        s.add(d)
        s.flush()
        assert d.id is not None
        return d.id


def get(engine: Engine, domain_id: int) -> Domain:
    with session_scope(engine) as s:
        d = s.get(Domain, domain_id)
        assert d is not None
        s.expunge(d)
        return d


def test_ca_failures_back_off_and_keep_the_cas_words(
    acme_settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    certbot = FakeCertbot()
    m = manager(acme_settings, engine, certbot)
    monkeypatch.setattr(m, "preflight", lambda _h: None)
    monkeypatch.setattr(CertManager, "_live", staticmethod(lambda _s, _a: object()))
    did = domain_row(engine)
    for attempt, delay in enumerate(BACKOFF, start=1):
        with session_scope(engine) as s:  # make it due again
            d = s.get(Domain, did)
            assert d is not None
            d.next_attempt_at = None
            s.add(d)
        before = utcnow()
        assert m._work_on(did, "www.shop.example", 1) is False
        d = get(engine, did)
        assert d.cert_state == CertState.failed and d.attempts == attempt
        assert "Type: unauthorized" in d.cert_error and "Invalid response" in d.cert_error
        assert d.next_attempt_at is not None
        assert timedelta(0) <= d.next_attempt_at - before - delay < timedelta(seconds=5)
    # backing off: not asked again before the time
    assert m._work_on(did, "www.shop.example", 1) is False
    assert len(certbot.calls) == len(BACKOFF)
    args = certbot.calls[0]
    assert args[:2] == ["certbot", "certonly"] and "--webroot" in args and "--keep-until-expiring" in args
    assert args[args.index("--domain") + 1] == "www.shop.example"


def test_a_preflight_refusal_asks_nothing_of_the_ca(
    acme_settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    certbot = FakeCertbot()
    m = manager(acme_settings, engine, certbot)
    monkeypatch.setattr(m, "resolve", lambda _h: ["203.0.113.7"])
    monkeypatch.setattr(CertManager, "_live", staticmethod(lambda _s, _a: object()))
    did = domain_row(engine)
    for _ in range(3):
        m._work_on(did, "www.shop.example", 1)
    d = get(engine, did)
    assert d.cert_state == CertState.dns_mismatch and certbot.calls == []
    assert d.cert_error == "DNS points elsewhere (203.0.113.7), not to this server (127.0.0.1)"
    monkeypatch.setattr(m, "resolve", lambda _h: [])
    m._work_on(did, "www.shop.example", 1)
    assert "no A or AAAA record" in get(engine, did).cert_error and certbot.calls == []


def test_an_issued_certificate_not_due_is_left_alone(
    acme_settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    certbot = FakeCertbot()
    m = manager(acme_settings, engine, certbot)
    monkeypatch.setattr(CertManager, "_live", staticmethod(lambda _s, _a: object()))
    expires = utcnow() + timedelta(days=acme_settings.cert_renew_days + 1)
    did = domain_row(engine, cert_state=CertState.issued, cert_expires_at=expires)
    for _ in range(50):
        assert m._work_on(did, "www.shop.example", 1) is False
    assert certbot.calls == []


def test_with_acme_off_nothing_is_requested(settings: Settings, engine: Engine) -> None:
    assert settings.acme is False
    certbot = FakeCertbot()
    m = CertManager(settings, engine, NginxSites(settings), no_sites(settings, engine), runner=certbot)
    did = domain_row(engine)
    m._work_on(did, "www.shop.example", 1)
    d = get(engine, did)
    assert d.cert_state == CertState.disabled and "PAAS_ACME is off" in d.cert_error and certbot.calls == []


@pytest.mark.parametrize(
    ("email", "wanted"),
    [("", ["--register-unsafely-without-email"]), ("ops@shop.example", ["--email", "ops@shop.example"])],
)
def test_certbot_registers_with_an_email_only_when_one_is_given(email: str, wanted: list[str]) -> None:
    args = commands.certbot_args(
        "certbot",
        hostname="shop.example",
        email=email,
        directory="https://ca.test/dir",
        webroot=Path("/w"),
        state_dir=Path("/s"),
    )
    assert all(flag in args for flag in wanted)
    assert ("--email" in args) == bool(email)
    assert ("--register-unsafely-without-email" in args) != bool(email)


def test_default_rows_follow_the_apps(acme_settings: Settings, engine: Engine, tmp_path: Path) -> None:
    from paas.domains import ensure_defaults

    domain_row(engine, hostname="www.shop.example")
    with session_scope(engine) as s:
        ensure_defaults(s, acme_settings)
        rows = {d.hostname: (d.app_id is None, d.is_default) for d in s.exec(select(Domain)).all()}
    assert rows == {
        "www.shop.example": (False, False),
        "shop.apps.test": (False, True),
        "paas.apps.test": (True, True),
    }


def test_a_failed_renewal_keeps_the_certificate_and_backs_off(
    acme_settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    certbot = FakeCertbot()
    told: list[tuple[str, str]] = []
    m = manager(
        acme_settings, engine, certbot, _tell=lambda event, **kw: told.append((event, kw["title"])) or 1
    )
    monkeypatch.setattr(CertManager, "_live", staticmethod(lambda _s, _a: object()))
    expires = utcnow() + timedelta(days=3)  # inside the renewal window
    did = domain_row(engine, cert_state=CertState.issued, cert_expires_at=expires)
    for _ in range(5):
        assert m._work_on(did, "www.shop.example", 1) is False
    d = get(engine, did)
    assert len(certbot.calls) == 1 and "--force-renewal" in certbot.calls[0]
    assert d.cert_state == CertState.issued and d.attempts == 1 and "unauthorized" in d.cert_error
    # the operator hears it: expiring (once, though checked five times) and the renewal's failure
    assert [event for event, _title in told] == ["cert.expiring", "cert.failed"]
    assert told[1][1] == "shop: the certificate for www.shop.example could not be renewed"
