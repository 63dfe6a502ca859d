from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from agent.docker_engine import Limits
from paas.errors import SettingsError
from paas.settings import load_settings, memory_bytes, settings_file_values


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
        # a restored archive's host reaches nginx's server_name: no directive may ride along
        ("PAAS_HOST", "x.example.com; } server { access_log /etc/cron.d/x; } server { server_name z"),
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


# issue 27: settings come from the environment and the server's own file, read as data ----------


def test_a_dotenv_file_where_a_command_runs_is_not_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`paas admin …` typed as root in a directory someone else writes to."""
    for name in [n for n in os.environ if n.startswith("PAAS_")]:
        monkeypatch.delenv(name)
    (tmp_path / ".env").write_text(f"PAAS_DATA_DIR={tmp_path / 'theirs'}\nPAAS_NGINX_BIN=/tmp/not-nginx\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.data_dir == Path("/var/lib/paas") and settings.nginx_bin == "nginx"


INSTALL_SH = Path(__file__).resolve().parents[2] / "deploy" / "install.sh"
PRELUDE = """set -euo pipefail
say() { printf '%s\\n' "paas-install: $*"; }
die() { printf '%s\\n' "paas-install: error: $*" >&2; exit 1; }
"""


def _install_sh(script: str, *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``script`` run by bash after install.sh's settings functions (as install.sh defines them)."""
    text = INSTALL_SH.read_text()
    functions = []
    for name in ("setting_line", "given_settings", "read_settings"):
        found = re.search(rf"^{name}\(\) \{{.*?^\}}$", text, re.S | re.M)
        assert found, f"deploy/install.sh defines no {name}()"
        functions.append(found[0])
    environ = {"PATH": os.environ["PATH"], **(env or {})}
    return subprocess.run(
        ["bash", "-c", PRELUDE + "\n".join(functions) + "\n" + script],
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
    )


ENV_AFTER = "\nprintf '%s\\0' --env--\nenv -0"  # the environment the script ends with


def _exported(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """What ENV_AFTER printed."""
    assert done.returncode == 0, done.stderr
    printed = done.stdout.partition("--env--\0")[2]
    return dict(item.partition("=")[::2] for item in printed.split("\0") if item)


def test_install_sh_reads_paas_env_as_data_and_never_runs_it(tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    env_file = tmp_path / "paas.env"
    env_file.write_text(
        "# a settings file a restore brought back\n"
        f"PAAS_DOMAIN=$(touch {pwned})\n"
        f"PAAS_HOST=`touch {pwned}`\n"
        "PAAS_BACKUP_SCHEDULE=30 3 * * *\n"  # as install.sh wrote values before: unquoted
        'PAAS_PUBLIC_URL="https://paas.example.com"\n'
        "PAAS_SECRET_KEY='a b $HOME ${HOME} \"q\" ;'\n"
        "  export PAAS_ACME=off  \n"
        f"touch {pwned}\n"
        "PATH=/nowhere\n"
        f"PAAS_X=1; touch {pwned}\n"
    )
    done = _install_sh(f'read_settings "{env_file}"' + ENV_AFTER)
    assert not pwned.exists()
    exported = _exported(done)
    assert {k: v for k, v in exported.items() if k.startswith("PAAS_")} == {
        "PAAS_DOMAIN": f"$(touch {pwned})",
        "PAAS_HOST": f"`touch {pwned}`",
        "PAAS_BACKUP_SCHEDULE": "30 3 * * *",
        "PAAS_PUBLIC_URL": "https://paas.example.com",
        "PAAS_SECRET_KEY": 'a b $HOME ${HOME} "q" ;',
        "PAAS_ACME": "off",
        "PAAS_X": f"1; touch {pwned}",
    }
    assert exported["PATH"] == os.environ["PATH"]
    assert done.stdout.count("paas-install: ignoring line") == 2  # the touch and the PATH lines
    # and install.sh itself neither sources it nor exports all it would define
    text = INSTALL_SH.read_text()
    assert not re.search(r'^\s*(\.|source)\s+"?\$ENV_FILE', text, re.M) and "set -a" not in text


def test_install_sh_writes_each_setting_so_that_every_reader_takes_it_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = {
        "PAAS_BACKUP_SCHEDULE": "30 3 * * *",  # the README's own example
        "PAAS_DATABASE_URL": "postgresql+psycopg://paas:p$w%rd@db/paas",
        "PAAS_ODD": 'a "b" $(c) `d` ${HOME} #e ;f',
    }
    env_file = tmp_path / "paas.env"
    wrote = _install_sh(f"given_settings 'PAAS_(SKIPPED)' >'{env_file}'", env={**given, "PAAS_SKIPPED": "1"})
    assert wrote.returncode == 0, wrote.stderr
    assert env_file.read_text() == (
        "PAAS_BACKUP_SCHEDULE='30 3 * * *'\n"
        "PAAS_DATABASE_URL='postgresql+psycopg://paas:p$w%rd@db/paas'\n"
        "PAAS_ODD='a \"b\" $(c) `d` ${HOME} #e ;f'\n"
    )
    # install.sh's next run reads them back as they were given
    exported = _exported(_install_sh(f'read_settings "{env_file}"' + ENV_AFTER))
    assert {k: v for k, v in exported.items() if k.startswith("PAAS_")} == given
    # so do paas's server commands (python-dotenv; systemd reads single quotes alike)
    from paas.cli.server import read_settings_file

    for name in given:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("PAAS_ENV_FILE", str(env_file))
    read_settings_file()
    assert {name: os.environ.get(name) for name in given} == given


def test_paas_env_is_parsed_as_data() -> None:
    text = (
        "# written by install.sh\n"
        "PAAS_DATABASE_URL='postgresql+psycopg://paas:p$w%rd@db/paas'\n"
        "PAAS_ODD='a \"b\" $(c) `d` ${HOME} #e ;f'\n"
        "export PAAS_DOMAIN=example.com\n"
        "PAAS_NO_VALUE\n"
        'PAAS_DOUBLE="x y"\n'
    )
    assert settings_file_values(text) == {
        "PAAS_DATABASE_URL": "postgresql+psycopg://paas:p$w%rd@db/paas",
        "PAAS_ODD": 'a "b" $(c) `d` ${HOME} #e ;f',
        "PAAS_DOMAIN": "example.com",
        "PAAS_DOUBLE": "x y",
    }


def test_install_sh_refuses_a_value_paas_env_cannot_hold(tmp_path: Path) -> None:
    for value in ("it's", "back\\slash", "two\nlines"):
        done = _install_sh('setting_line PAAS_ODD "$ODD"', env={"ODD": value})
        assert done.returncode == 1 and "PAAS_ODD: paas.env cannot hold" in done.stderr, (value, done)
