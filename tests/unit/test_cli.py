"""The `paas` CLI, with Typer's runner, against a live server on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import Engine
from typer.testing import CliRunner

from paas.cli import app as cli
from paas.settings import Settings
from tests.integration.harness import free_port
from web.app import create_app

runner = CliRunner()


@pytest.fixture
def server(settings: Settings, engine: Engine) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, engine=engine), host="127.0.0.1", port=port, log_level="warning"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def env(server: str, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.delenv("PAAS_URL", raising=False)
    monkeypatch.delenv("PAAS_TOKEN", raising=False)
    return {"PAAS_URL": server, "PAAS_TOKEN": token}


def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(cli, list(args), env=env, input=input, catch_exceptions=False)
    return result.exit_code, result.output


def test_login_saves_url_and_token_with_0600(server: str, token: str, env: dict[str, str]) -> None:
    code, out = run("login", server, "--token", token)
    assert code == 0, out
    from paas.client import config_path

    path = config_path()
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text()) == {"url": server, "token": token}
    code, out = run("apps", "list", "--json")  # uses the saved login
    assert (code, json.loads(out)) == (0, [])


def test_create_list_info_releases_delete(env: dict[str, str]) -> None:
    code, out = run("apps", "create", "shop", "--repo", "https://github.com/o/shop.git", "--json", env=env)
    assert code == 0, out
    created = json.loads(out)
    assert set(created) >= {"name", "webhook_url", "webhook_secret"}
    code, out = run("apps", "list", "--json", env=env)
    assert [a["name"] for a in json.loads(out)] == ["shop"]
    code, out = run("apps", "list", env=env)
    assert code == 0 and "shop" in out
    code, out = run("apps", "info", "shop", env=env)
    assert code == 0 and "https://github.com/o/shop.git" in out and created["webhook_secret"] not in out
    code, out = run("releases", "shop", "--json", env=env)
    assert (code, json.loads(out)) == (0, [])
    code, out = run("deploy", "shop", env=env)
    assert code == 0 and "queued" in out
    from paas.errors import PaasError

    with pytest.raises(PaasError, match="pass --yes"):  # no terminal to ask: refuse
        run("apps", "delete", "shop", env=env, input="y\n")
    code, out = run("apps", "delete", "shop", "--yes", env=env)
    assert code == 0 and "deleting shop" in out


def test_human_create_output_explains_the_webhook(env: dict[str, str]) -> None:
    code, out = run("apps", "create", "blog", "--repo", "git@github.com:o/blog.git", env=env)
    assert code == 0
    assert "application/json" in out and "/hooks/github/blog" in out and "push" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("apps", "info", "nope"), "no app named 'nope'"),
        (("apps", "create", "Bad", "--repo", "https://x/y.git"), "invalid input: name"),
        (("releases", "nope"), "no app named 'nope'"),
    ],
)
def test_expected_errors_are_one_line_without_a_trace(
    env: dict[str, str], args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from paas.cli import main

    with pytest.raises(SystemExit) as exit_info:
        _invoke_main(main, args, env)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_wrong_token_and_server_down(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], env: dict[str, str]
) -> None:
    from paas.cli import main

    for bad_env, message in [
        ({**env, "PAAS_TOKEN": "paas_wrong"}, "refused the token"),
        ({**env, "PAAS_URL": f"http://127.0.0.1:{free_port()}"}, "cannot connect"),
        ({}, "not logged in"),
    ]:
        with pytest.raises(SystemExit):
            _invoke_main(main, ("apps", "list"), bad_env)
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def _invoke_main(main: object, args: tuple[str, ...], env: dict[str, str]) -> None:
    import os
    import sys

    saved_argv, saved_env = sys.argv, dict(os.environ)
    sys.argv = ["paas", *args]
    os.environ.pop("PAAS_URL", None)
    os.environ.pop("PAAS_TOKEN", None)
    os.environ.update(env)
    try:
        main()  # type: ignore[operator]
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
