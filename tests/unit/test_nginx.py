"""Rendered nginx configs: golden files, each accepted by the real `nginx -t`;
and the switch: atomic write, validate, reload, restore on any error."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import commands
from agent.nginx import (
    CONTROL_SITE,
    NginxError,
    NginxSites,
    SiteSpec,
    TlsHost,
    render_common,
    render_control,
    render_default,
    render_site,
)
from paas.settings import Settings, load_settings
from tests.integration.harness import Nginx, self_signed

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


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    server = Nginx(tmp_path / "nginx")
    server.start()
    yield server
    server.stop()


def _sites(nginx: Nginx, tmp_path: Path) -> NginxSites:
    settings = load_settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        domain="apps.test",
        nginx_conf_dir=nginx.conf_dir,
        nginx_main_conf=nginx.main_conf,
        listen_address="127.0.0.1",
        http_port=nginx.port,
    )
    return NginxSites(settings)


@pytest.mark.integration
def test_every_golden_config_passes_nginx_t(nginx: Nginx, tmp_path: Path) -> None:
    # Golden files listen on ports 80/8080 of every address: test them with
    # `nginx -t` only (nothing is started from them).
    live = tmp_path / "live"
    for name in sorted(CASES):
        text = (GOLDEN / name).read_text()
        for host in set(re.findall(rf"{re.escape(LIVE)}([^/]+)/", text)):
            self_signed(live / host, host)
        (nginx.conf_dir / f"golden-{name}").write_text(text.replace(LIVE, f"{live}/"))
    result = commands.run(commands.nginx_test_args("nginx", nginx.main_conf))
    assert result.ok, result.output


@pytest.mark.integration
def test_a_failed_check_restores_the_previous_site(nginx: Nginx, tmp_path: Path) -> None:
    sites = _sites(nginx, tmp_path)
    sites.ensure_common()
    good = render_site(
        SiteSpec(app="shop", version=1, hostnames=("shop.apps.test",), upstreams=("127.0.0.1:20001",)),
        sites._settings,
    )
    sites.apply("shop", good)
    broken = good.replace("127.0.0.1:20001", "127.0.0.1:99999")
    with pytest.raises(NginxError, match="nginx -t failed"):
        sites.apply("shop", broken)
    assert sites.current("shop") == good
    # a brand-new site that fails leaves no file behind
    with pytest.raises(NginxError):
        sites.apply("other", broken.replace("paas_app_shop", "paas_app_other"))
    assert sites.current("other") is None
    assert sorted(p.name for p in nginx.conf_dir.iterdir()) == ["paas-0-common.conf", "paas-app-shop.conf"]


@pytest.mark.integration
def test_reload_failure_is_reported_and_restored(tmp_path: Path) -> None:
    conf_dir = tmp_path / "conf.d"
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/e.log; events {{}} "
        f"http {{ include {conf_dir}/*.conf; }}\n"
    )
    settings = load_settings(
        _env_file=None,
        data_dir=tmp_path / "d",
        nginx_conf_dir=conf_dir,
        nginx_main_conf=main,
        listen_address="127.0.0.1",
        http_port=1,
    )
    sites = NginxSites(settings)  # nginx is not running: the reload must fail
    sites.ensure_common()
    with pytest.raises(NginxError, match="reload failed"):
        sites.apply(CONTROL_SITE, render_control(settings))
    assert sites.current(CONTROL_SITE) is None


@pytest.mark.integration
def test_verify_waits_for_nginx_to_serve_the_new_release(nginx: Nginx, tmp_path: Path) -> None:
    sites = _sites(nginx, tmp_path)
    sites.ensure_common()
    spec = SiteSpec(app="shop", version=4, hostnames=("shop.apps.test",), upstreams=("127.0.0.1:9",))
    sites.apply("shop", render_site(spec, sites._settings))
    sites.verify(spec)  # answered by nginx itself, whatever the upstream
    newer = SiteSpec(app="shop", version=5, hostnames=spec.hostnames, upstreams=spec.upstreams)
    with pytest.raises(NginxError, match="does not serve 'shop v5'"):
        sites.verify(newer, timeout=0.5)  # v5 was never applied


@pytest.mark.integration
def test_verify_fails_when_nginx_does_not_include_the_conf_dir(nginx: Nginx, tmp_path: Path) -> None:
    settings = load_settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        domain="apps.test",
        nginx_conf_dir=tmp_path / "elsewhere",
        nginx_main_conf=nginx.main_conf,
        listen_address="127.0.0.1",
        http_port=nginx.port,
    )
    sites = NginxSites(settings)
    spec = SiteSpec(app="shop", version=1, hostnames=("shop.apps.test",), upstreams=("127.0.0.1:9",))
    sites.apply("shop", render_site(spec, settings))  # valid, reloaded, but never included
    with pytest.raises(NginxError, match="does nginx include"):
        sites.verify(spec, timeout=0.5)
