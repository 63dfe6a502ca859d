"""Rendered nginx configs: golden files, each accepted by the real `nginx -t`;
and the switch: atomic write, validate, reload, restore on any error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.nginx import (
    SiteSpec,
    TlsHost,
    render_common,
    render_control,
    render_default,
    render_site,
)
from paas.settings import Settings, load_settings

GOLDEN = Path(__file__).parent.parent / "golden"


def _settings(**kw: object) -> Settings:
    base: dict[str, object] = {"_env_file": None, "data_dir": Path("/var/lib/paas"), "domain": "example.com"}
    return load_settings(**{**base, **kw})


LIVE = "/var/lib/paas/letsencrypt/live/"


def _tls(host: str) -> TlsHost:
    return TlsHost(host, f"{LIVE}{host}/fullchain.pem", f"{LIVE}{host}/privkey.pem")


CASES = {
    "site-default.conf": lambda: render_site(
        SiteSpec(app="shop", version=3, hostnames=("shop.example.com",), upstreams=("127.0.0.1:20001",)),
        _settings(),
    ),
    "site-loopback.conf": lambda: render_site(
        SiteSpec(
            app="my-app",
            version=12,
            hostnames=("my-app.example.com", "www.shop.test"),
            upstreams=("127.0.0.1:20001", "127.0.0.1:20002"),
        ),
        _settings(listen_address="127.0.0.1", http_port=8080),
    ),
    "site-https.conf": lambda: render_site(
        SiteSpec(
            app="store",
            version=5,
            hostnames=("store.example.com", "www.store.test"),
            upstreams=("127.0.0.1:20001",),
            tls=(_tls("store.example.com"),),
        ),
        _settings(),
    ),
    "site-https-hsts.conf": lambda: render_site(
        SiteSpec(
            app="cart",
            version=6,
            hostnames=("cart.example.com", "www.cart.test"),
            upstreams=("127.0.0.1:20001", "127.0.0.1:20002"),
            tls=(_tls("cart.example.com"), _tls("www.cart.test")),
            hsts=True,
        ),
        _settings(listen_address="127.0.0.1", http_port=8080, https_port=8443),
    ),
    "control.conf": lambda: render_control(_settings(web_port=8000)),
    "control-https.conf": lambda: render_control(
        _settings(web_port=8000, host="paas.example.com"), tls=_tls("paas.example.com")
    ),
    "common.conf": render_common,
    "default.conf": lambda: render_default(_settings()),
    "default-acme-off.conf": lambda: render_default(
        _settings(acme=False, listen_address="127.0.0.1", http_port=8080)
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rendered_config_matches_golden_file(name: str) -> None:
    rendered = CASES[name]()
    golden = GOLDEN / name
    if os.environ.get("PAAS_UPDATE_GOLDEN"):
        golden.write_text(rendered, encoding="utf-8")
    assert rendered == golden.read_text(encoding="utf-8")
