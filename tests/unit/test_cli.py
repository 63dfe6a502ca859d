"""The `paas` CLI, with Typer's runner, against a live server on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testkit.harness import free_port
from tests.unit.cli_support import invoke_main, run


def test_login_saves_url_and_token_with_0600(server: str, token: str, env: dict[str, str]) -> None:
    code, out = run("login", server, "--token", token)
    assert code == 0, out
    from paas.cli.http import config_path

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
        invoke_main(main, args, env)
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
            invoke_main(main, ("apps", "list"), bad_env)
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "url", ["http://paas.example.invalid", "http://203.0.113.9:8080", "http://[2001:db8::1]/base"]
)
def test_no_token_goes_over_plain_http_off_this_machine(url: str, env: dict[str, str]) -> None:
    from paas.cli.http import ClientError

    with pytest.raises(ClientError, match=r"refusing to send your token in clear to .*--insecure"):
        run("apps", "list", env={"PAAS_URL": url, "PAAS_TOKEN": env["PAAS_TOKEN"]})
    # (refused before any connection; `paas login` to such a URL first looks for its HTTPS
    # twin: tests/integration/test_https_default.py, from a network namespace)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000",
        "http://127.8.9.10",
        "http://localhost:8000",
        "http://[::1]:80",
        "https://x.test",
    ],
)
def test_loopback_and_https_urls_may_carry_the_token(url: str) -> None:
    from paas.cli.http import check_transport

    check_transport(url, insecure=False)  # no error


def test_insecure_sends_it_anyway_and_says_so_every_time(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from paas.cli.http import ApiClient, load_login, save_login

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for name in ("PAAS_URL", "PAAS_TOKEN", "PAAS_INSECURE"):
        monkeypatch.delenv(name, raising=False)
    save_login("http://paas.example.invalid", "paas_x", insecure=True)
    assert load_login().insecure is True
    ApiClient.from_login()
    assert "crosses the network in clear to http://paas.example.invalid" in capsys.readouterr().err
    monkeypatch.setenv("PAAS_URL", "http://other.example.invalid")  # the variables carry their own choice
    monkeypatch.setenv("PAAS_TOKEN", "paas_y")
    assert load_login().insecure is False
    monkeypatch.setenv("PAAS_INSECURE", "1")
    assert load_login().insecure is True


def test_an_https_redirect_to_another_host_is_never_followed() -> None:
    """Finding the HTTPS twin sends no credential, and a tampered plain-HTTP
    redirect to someone else's https:// site is ignored."""
    import http.server
    import threading

    seen: list[str] = []

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(301)
            self.send_header("Location", "https://attacker.example/")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    port = free_port()
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), Redirect) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        from paas.cli.http import https_twin

        assert https_twin(f"http://127.0.0.1:{port}", timeout=2) is None
        server.shutdown()
    assert seen == [""]


def test_the_command_line_loads_no_server_side_modules_to_start() -> None:
    """A client command starts without the database, web or agent modules
    (they cost a `paas rollback --wait` half a second before it asks anything)."""
    import subprocess
    import sys

    code = "import sys, paas.cli; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    heavy = {
        m
        for m in loaded
        if m.split(".")[0] in ("sqlalchemy", "sqlmodel", "docker", "fastapi", "web", "agent")
    }
    assert heavy == set()
