"""`paas rollback|unpin|restart|cancel` with Typer's runner against a live
server (no agent: these check what is asked and every error path)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine

from paas.cli import app as cli
from tests.unit.cli_support import invoke_main, run, runner
from tests.unit.test_rollback_api import release


@pytest.fixture
def shop(env: dict[str, str]) -> str:
    code, out = run("apps", "create", "shop", "--repo", "https://github.com/o/shop.git", "--json", env=env)
    assert code == 0, out
    return "shop"


def test_rollback_queues_and_pins(env: dict[str, str], shop: str, engine: Engine) -> None:
    release(engine, 1)
    release(engine, 2)
    code, out = run("rollback", shop, "--no-wait", env=env)
    assert code == 0, out
    assert "rolling shop back to v1" in out and "rollback queued" in out and "pinned" in out
    assert "migrations are not undone" in out  # the runner mixes stderr in
    code, out = run("apps", "info", shop, "--json", env=env)
    assert json.loads(out)["pinned"] is True
    code, out = run("unpin", shop, env=env)
    assert code == 0 and "shop unpinned; 0 push(es) were waiting" in out
    result = runner.invoke(cli, ["rollback", shop, "--to", "v1", "--no-wait", "--json"], env=env)
    assert result.exit_code == 0 and json.loads(result.stdout)["kind"] == "rollback"  # stdout: JSON only
    assert "migrations are not undone" in result.stderr


def test_restart_and_cancel(env: dict[str, str], shop: str, engine: Engine) -> None:
    release(engine, 1)
    code, out = run("restart", shop, "--no-wait", env=env)
    assert code == 0 and "restart queued" in out
    code, out = run("cancel", shop, env=env)
    assert code == 0 and "cancelled queued job" in out


@pytest.mark.parametrize(
    ("args", "live", "message"),
    [
        (("rollback", "shop"), 0, "has no live release yet"),
        (("rollback", "shop"), 1, "no successful release before v1"),
        (("rollback", "shop", "--to", "v9"), 2, "shop has no release v9"),
        (("rollback", "shop", "--to", "v2"), 2, "v2 is already live"),
        (("rollback", "shop", "--to", "three"), 2, "--to takes a version such as v3"),
        (("rollback", "shop", "--to", "v0"), 2, "--to takes a version such as v3"),
        (("rollback", "nope"), 0, "no app named 'nope'"),
        (("unpin", "shop"), 1, "shop is not pinned"),
        (("restart", "shop"), 0, "has no live release yet"),
        (("cancel", "shop"), 1, "shop has no deploy running or queued"),
        (("deploy", "shop", "--commit", "not-hex"), 1, "invalid input: commit"),
    ],
)
def test_errors_are_one_line_without_a_trace(
    env: dict[str, str],
    shop: str,
    engine: Engine,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    live: int,
    message: str,
) -> None:
    from paas.cli import main

    for version in range(1, live + 1):
        release(engine, version)
    with pytest.raises(SystemExit) as exit_info:
        invoke_main(main, args, env)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_wait_returns_once_the_release_is_live_not_after_retire(
    env: dict[str, str], shop: str, engine: Engine
) -> None:
    """--wait ends when the job's release is switched in: the old one's drain
    and stop (retire) go on after, off the path to live."""
    from sqlmodel import select

    from paas import queue
    from paas.cli.client import finish_release
    from paas.cli.http import ApiClient
    from paas.db import session_scope
    from paas.models import App, Deployment, Job, JobState

    release(engine, 1)
    with session_scope(engine) as s:
        app = s.exec(select(App)).one()
        job = queue.enqueue(s, kind=queue.RELEASE, app=app, payload={"trigger": "restart"})
        job.state = JobState.running  # the agent is retiring v1
        dep = s.exec(select(Deployment)).one()
        job.deployment_id = dep.id
        s.add(job)
        s.flush()
        job_id = int(job.id or 0)
    client = ApiClient(env["PAAS_URL"], env["PAAS_TOKEN"])
    shown = client.request("GET", f"/jobs/{job_id}")
    assert shown["state"] == "running" and shown["live"] is True
    import typer.testing

    def finish() -> None:
        finish_release(client, shop, {"id": job_id}, wait=True, as_json=False, what="restart")

    app_ = typer.Typer()
    app_.command()(finish)
    result = typer.testing.CliRunner().invoke(app_, [])
    assert result.exit_code == 0 and "shop v1 is live" in result.output
    with session_scope(engine) as s:
        assert s.get(Job, job_id).state == JobState.running  # type: ignore[union-attr]  (still retiring)
