from __future__ import annotations

from pathlib import Path

import pytest

from agent.docker_engine import Limits
from paas.errors import SettingsError
from paas.settings import load_settings, memory_bytes


def test_defaults_suit_a_debian_server(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("PAAS_"):
            monkeypatch.delenv(name)
    s = load_settings(_env_file=None)
    assert s.nginx_conf_dir == Path("/etc/nginx/conf.d")
    assert (s.http_port, s.https_port, s.web_port) == (80, 443, 8000)
    assert s.db_url == "sqlite:////var/lib/paas/db/paas.db"
    assert s.agent_socket == Path("/run/paas/agent.sock") and s.web_account == "nobody"
    assert s.app_hostname("shop") == "shop.localhost"


def test_settings_come_from_paas_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PAAS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PAAS_DOMAIN", "Example.COM.")
    monkeypatch.setenv("PAAS_HTTP_PORT", "8080")
    monkeypatch.setenv("PAAS_DATABASE_URL", "postgresql+psycopg://u@db/paas")
    s = load_settings(_env_file=None)
    assert s.domain == "example.com"
    assert s.http_port == 8080
    assert s.db_url == "postgresql+psycopg://u@db/paas"
    assert s.control_host == "paas.example.com"


def test_certificates_are_on_by_default_and_need_no_email(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PAAS_ACME", "PAAS_ACME_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    s = load_settings(_env_file=None)
    assert s.acme is True and s.acme_email == ""
    monkeypatch.setenv("PAAS_ACME", "off")
    assert load_settings(_env_file=None).acme is False


def test_settings_read_a_dotenv_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PAAS_DOMAIN", raising=False)
    env = tmp_path / ".env"
    env.write_text("PAAS_DOMAIN=from-dotenv.test\n")
    assert load_settings(_env_file=env).domain == "from-dotenv.test"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PAAS_HTTP_PORT", "eighty"),
        ("PAAS_WEB_PORT", "70000"),
        ("PAAS_DOMAIN", "not a domain"),
        ("PAAS_PUBLIC_URL", "ftp://x"),
        ("PAAS_AGENT_WORKERS", "0"),
        ("PAAS_PUBLIC_IPS", "127.0.0.1, not-an-ip"),
        ("PAAS_DNS_RESOLVER", "127.0.0.1:port"),
        ("PAAS_ACME_DIRECTORY", "http://ca.example/dir"),
        ("PAAS_ACME_EMAIL", "not an email"),
    ],
)
def test_an_invalid_variable_is_named_in_the_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None)
    assert variable in str(info.value)


def test_an_inverted_port_range_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAAS_PORT_RANGE_START", "30000")
    monkeypatch.setenv("PAAS_PORT_RANGE_END", "20000")
    with pytest.raises(SettingsError, match="PAAS_PORT_RANGE_END"):
        load_settings(_env_file=None)


def test_public_ips_and_resolver_are_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAAS_PUBLIC_IPS", " 127.0.0.1 , ::1,")
    monkeypatch.setenv("PAAS_DNS_RESOLVER", "127.0.0.1:8053")
    s = load_settings(_env_file=None)
    assert s.public_ips == "127.0.0.1,::1" and s.dns_resolver == "127.0.0.1:8053"


def test_container_limits_read_as_docker_does() -> None:
    s = load_settings(_env_file=None, app_memory="256M", build_memory="2g", app_cpus=0.5, app_pids=128)
    assert (memory_bytes(s.app_memory), memory_bytes(s.build_memory)) == (256 << 20, 2 << 30)
    for bad in ("lots", "1t", "8m", "-5m"):
        with pytest.raises(SettingsError, match="PAAS_APP_MEMORY"):
            load_settings(_env_file=None, app_memory=bad)
    with pytest.raises(SettingsError, match="PAAS_APP_PIDS"):
        load_settings(_env_file=None, app_pids=0)
    limits = Limits(memory=256 << 20, nano_cpus=500_000_000, pids=128).create_kwargs()
    assert limits == {
        "mem_limit": 256 << 20,
        "memswap_limit": 256 << 20,
        "nano_cpus": 500_000_000,
        "pids_limit": 128,
        "security_opt": ["no-new-privileges:true"],
        "cap_drop": ["NET_RAW", "MKNOD", "SETFCAP", "SYS_CHROOT", "AUDIT_WRITE", "SETPCAP"],
    }
