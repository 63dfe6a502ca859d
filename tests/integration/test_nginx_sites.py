"""nginx sites for real: every golden config passes `nginx -t`, a failed
check or reload puts the previous site back, and verify waits until nginx
serves the new release (tests/unit/test_nginx.py renders them)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import commands
from agent.nginx import CONTROL_SITE, NginxError, NginxSites, SiteSpec, render_control, render_site
from paas.settings import load_settings
from testkit.harness import Nginx, self_signed
from tests.unit.test_nginx import CASES, GOLDEN, LIVE

pytestmark = pytest.mark.integration


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


def test_verify_waits_for_nginx_to_serve_the_new_release(nginx: Nginx, tmp_path: Path) -> None:
    sites = _sites(nginx, tmp_path)
    sites.ensure_common()
    spec = SiteSpec(app="shop", version=4, hostnames=("shop.apps.test",), upstreams=("127.0.0.1:9",))
    sites.apply("shop", render_site(spec, sites._settings))
    sites.verify(spec)  # answered by nginx itself, whatever the upstream
    newer = SiteSpec(app="shop", version=5, hostnames=spec.hostnames, upstreams=spec.upstreams)
    with pytest.raises(NginxError, match="does not serve 'shop v5'"):
        sites.verify(newer, timeout=0.5)  # v5 was never applied


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
