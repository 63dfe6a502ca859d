"""`paas env ...` and `paas keys rotate` with Typer's runner against a live server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from paas.crypto import Keyring, env_purpose, load_keys
from paas.models import EnvVar
from paas.settings import Settings
from tests.unit.cli_support import invoke_main, run, server_env

SECRET = "sk_cli_canary_42"  # noqa: S105  (a canary, not a credential)


@pytest.fixture
def shop(env: dict[str, str]) -> str:
    code, out = run("apps", "create", "shop", "--repo", "https://github.com/o/shop.git", "--json", env=env)
    assert code == 0, out
    return "shop"


def test_set_list_unset_export(env: dict[str, str], shop: str) -> None:
    code, out = run("env", "set", shop, "GREETING=hello world", "EMPTY=", "URL=a=b", env=env)
    assert code == 0, out
    assert "set GREETING, EMPTY, URL" in out and "applies at the first deploy" in out
    code, out = run("env", "set", shop, "API_TOKEN", "--secret", env=env, input=SECRET + "\n")
    assert code == 0 and SECRET not in out
    code, out = run("env", "list", shop, "--json", env=env)
    rows = {r["key"]: r for r in json.loads(out)}
    assert rows["GREETING"]["value"] == "hello world" and rows["EMPTY"]["value"] == ""
    assert rows["URL"]["value"] == "a=b"
    assert rows["API_TOKEN"]["value"] is None and rows["API_TOKEN"]["secret"] is True
    code, out = run("env", "list", shop, env=env)
    assert code == 0 and "(secret)" in out and SECRET not in out and "hello world" in out
    code, out = run("env", "export", shop, env=env)
    assert 'GREETING="hello world"' in out and "# API_TOKEN=********" in out and SECRET not in out
    code, out = run("env", "unset", shop, "GREETING", "URL", "--no-restart", env=env)
    assert code == 0 and "unset GREETING, URL" in out and "staged" in out
    code, out = run("env", "list", shop, "--json", env=env)
    assert sorted(r["key"] for r in json.loads(out)) == ["API_TOKEN", "EMPTY"]


def test_build_scope_prints_the_history_warning(env: dict[str, str], shop: str) -> None:
    code, out = run("env", "set", shop, "API_URL=https://api", "--scope", "build", env=env)
    assert code == 0 and "warning: API_URL is passed to builds as a build arg" in out
    assert "docker history" in out


def test_import_a_file(env: dict[str, str], shop: str, tmp_path: Path) -> None:
    path = tmp_path / "prod.env"
    path.write_text("# production\nDATABASE_URL=postgres://db/shop\nexport DEBUG=0\n")
    code, out = run("env", "import", shop, str(path), "--secret", env=env)
    assert code == 0 and "set DATABASE_URL, DEBUG" in out
    code, out = run("env", "list", shop, "--json", env=env)
    assert [(r["key"], r["secret"], r["value"]) for r in json.loads(out)] == [
        ("DATABASE_URL", True, None),
        ("DEBUG", True, None),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("env", "set", "shop", "1X=1"), "'1X' is not a valid env var name"),
        (("env", "set", "shop", "PORT=80"), "PORT is reserved"),
        (("env", "set", "shop", "PAAS_X=1"), "PAAS_X is reserved"),
        (("env", "set", "shop", "=value"), "argument 1 has no name"),
        (("env", "set", "nope", "A=1"), "no app named 'nope'"),
        (("env", "unset", "shop", "MISSING"), "shop has no env var MISSING"),
        (("env", "import", "shop", "/nonexistent/file.env"), "cannot read /nonexistent/file.env"),
        (("env", "list", "nope"), "no app named 'nope'"),
    ],
)
def test_env_errors_are_one_line_without_a_trace(
    env: dict[str, str],
    shop: str,
    args: tuple[str, ...],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from paas.cli import main

    with pytest.raises(SystemExit) as exit_info:
        invoke_main(main, args, env)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_a_malformed_env_file_names_the_line(
    env: dict[str, str],
    shop: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from paas.cli import main

    path = tmp_path / "bad.env"
    path.write_text("A=1\nB=2\nthis line has hunter2 in it\n")
    with pytest.raises(SystemExit):
        invoke_main(main, ("env", "import", shop, str(path)), env)
    err = capsys.readouterr().err
    assert ".env line 3 is not KEY=VALUE" in err and "hunter2" not in err
    code, out = run("env", "list", shop, "--json", env=env)
    assert json.loads(out) == []  # lines 1 and 2 were not applied either


def test_keys_rotate_on_the_server(
    env: dict[str, str],
    shop: str,
    settings: Settings,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run("env", "set", shop, f"API_TOKEN={SECRET}", "--secret", env=env)
    before = load_keys(settings.keys_dir, private=True)
    for key, value in server_env(settings).items():
        monkeypatch.setenv(key, value)
    code, out = run("keys", "rotate")
    assert code == 0 and "1 env values" in out and "old keys removed" in out, out
    after = load_keys(settings.keys_dir, private=True)
    assert not set(after.fernet) & set(before.fernet)
    with Session(engine) as s:
        row = s.exec(select(EnvVar)).one()
    agent = Keyring(settings.keys_dir, private=True)
    assert agent.decrypt(row.value, purpose=env_purpose(shop, row.key)) == SECRET
    code, out = run("env", "list", shop, "--json", env=env)  # the live server re-read the keys
    assert code == 0 and json.loads(out)[0]["key"] == "API_TOKEN"
