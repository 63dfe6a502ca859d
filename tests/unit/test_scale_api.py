"""`paas scale` and app run settings through the REST API and the CLI (no
agent: the tests check the rows and jobs it would act on; the real rollout is
in tests/integration/test_buildpacks.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from paas.settings import Settings
from tests.unit.cli_support import invoke_main, run
from tests.unit.test_rollback_api import jobs, release
from tests.unit.test_rollback_api import shop as shop  # the fixture
from web.app import create_web_app

PROCFILE = {"web": "gunicorn app:app", "worker": "python -m worker", "release": "python migrate.py"}


def test_scale_before_the_first_deploy_is_kept_for_it(
    client: TestClient, auth: dict[str, str], shop: dict[str, Any], engine: Engine
) -> None:
    assert shop["scale"] == {} and shop["run_command"] == "" and shop["base_image"] == ""
    r = client.put("/api/v1/apps/shop/scale", json={"processes": {"web": 2}}, headers=auth)
    assert r.status_code == 202 and r.json() == {"formation": {"web": 2}, "job": None}
    assert client.get("/api/v1/apps/shop", headers=auth).json()["scale"] == {"web": 2}
    assert jobs(engine) == []


def test_scale_a_live_release_rolls_it_out_again_without_the_release_command(
    client: TestClient, auth: dict[str, str], shop: dict[str, Any], engine: Engine
) -> None:
    release(engine, 1, procfile=PROCFILE)
    assert client.get("/api/v1/apps/shop/scale", headers=auth).json() == {"web": 1, "worker": 1}
    r = client.put("/api/v1/apps/shop/scale", json={"processes": {"web": 3, "worker": 0}}, headers=auth)
    assert r.status_code == 202, r.text
    assert r.json()["formation"] == {"web": 3, "worker": 0}
    (job,) = jobs(engine)
    assert job.kind == "release" and job.payload["run_release"] is False
    assert job.payload["source_version"] == 1 and job.payload["trigger"] == "scale web=3 worker=0"
    # kept: a later scale of one type leaves the other as it was
    r = client.put("/api/v1/apps/shop/scale", json={"processes": {"worker": 2}}, headers=auth)
    assert r.json()["formation"] == {"web": 3, "worker": 2}


def test_scale_refusals_name_the_problem_and_change_nothing(
    client: TestClient, auth: dict[str, str], shop: dict[str, Any], engine: Engine
) -> None:
    release(engine, 1, procfile=PROCFILE)
    cases = [
        ({"beat": 1}, "no process type 'beat' in the live release v1; it has web, worker"),
        ({"release": 1}, "release runs once per deploy"),
        ({"web": 0}, "web needs at least 1 container"),
        ({"worker": 11}, "more than the limit of 10"),
        ({}, "name at least one process type"),
    ]
    for processes, message in cases:
        r = client.put("/api/v1/apps/shop/scale", json={"processes": processes}, headers=auth)
        assert r.status_code == 422 and message in r.text, (processes, r.text)
    bad = client.put("/api/v1/apps/shop/scale", json={"processes": {"Web!": 1}}, headers=auth)
    assert bad.status_code == 422 and "processes" in bad.text
    assert (
        client.put("/api/v1/apps/shop/scale", json={"processes": {"web": -1}}, headers=auth).status_code
        == 422
    )
    assert (
        client.put("/api/v1/apps/nope/scale", json={"processes": {"web": 1}}, headers=auth).status_code == 404
    )
    assert client.get("/api/v1/apps/shop", headers=auth).json()["scale"] == {} and jobs(engine) == []


def test_run_command_and_base_image_settings(
    client: TestClient, auth: dict[str, str], shop: dict[str, Any]
) -> None:
    body = {"run_command": "python serve.py --port $PORT", "base_image": "python:3.12-slim"}
    r = client.patch("/api/v1/apps/shop", json=body, headers=auth)
    assert r.status_code == 200 and r.json()["run_command"] == body["run_command"]
    assert r.json()["base_image"] == "python:3.12-slim"
    for field, value, message in (
        ("run_command", "a\nb", "must be one line"),
        ("base_image", "Not An Image", "must be an image reference"),
    ):
        r = client.patch("/api/v1/apps/shop", json={field: value}, headers=auth)
        assert r.status_code == 422 and message in r.text and field in r.text
    cleared = client.patch("/api/v1/apps/shop", json={"run_command": ""}, headers=auth).json()
    assert cleared["run_command"] == "" and cleared["base_image"] == "python:3.12-slim"


def assert_one_line_failure(
    args: tuple[str, ...], env: dict[str, str], capsys: pytest.CaptureFixture[str], message: str
) -> None:
    from paas.cli import main

    with pytest.raises(SystemExit) as exit_info:
        invoke_main(main, args, env)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and message in err, (args, err)
    assert "Traceback" not in err and err.count("\n") == 1


def test_cli_scale_and_apps_set(
    env: dict[str, str],
    engine: Engine,
    client: TestClient,
    auth: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        client.post(
            "/api/v1/apps", json={"name": "shop", "repo_url": "https://github.com/o/r.git"}, headers=auth
        ).status_code
        == 201
    )
    code, out = run("scale", "shop", "web=2", env=env)
    assert code == 0 and "web=2; applies at the first deploy" in out
    release(engine, 1, procfile=PROCFILE)
    code, out = run("scale", "shop", "--json", env=env)
    assert json.loads(out) == {"web": 2, "worker": 1}
    code, out = run("scale", "shop", "worker=3", "--no-wait", env=env)
    assert code == 0 and "scale to web=2 worker=3 queued" in out
    for args, message in (
        (("scale", "shop", "worker"), "expected TYPE=COUNT such as web=2, got 'worker'"),
        (("scale", "shop", "beat=1"), "no process type 'beat'"),
        (("apps", "set", "shop"), "nothing to change"),
        (("apps", "set", "shop", "--base-image", "BAD IMAGE"), "must be an image reference"),
    ):
        assert_one_line_failure(args, env, capsys, message)
    code, out = run("apps", "set", "shop", "--run-command", "python serve.py", env=env)
    assert code == 0 and "changed run_command" in out


def test_build_plan_needs_the_agent(
    env: dict[str, str], client: TestClient, auth: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        client.post(
            "/api/v1/apps", json={"name": "shop", "repo_url": "https://github.com/o/r.git"}, headers=auth
        ).status_code
        == 201
    )
    r = client.get("/api/v1/apps/shop/build-plan", params={"ref": "-bad"}, headers=auth)
    assert r.status_code == 422 and "ref is not a valid git branch name" in r.text
    r = client.get("/api/v1/apps/shop/build-plan", headers=auth)
    assert r.status_code == 503 and "agent does not answer" in r.text
    assert_one_line_failure(("build-plan", "shop"), env, capsys, "agent does not answer")


def test_an_app_runs_at_most_its_share_of_containers(
    settings: Settings, engine: Engine, auth: dict[str, str], shop: dict[str, Any]
) -> None:
    release(engine, 1, procfile=PROCFILE)
    small = settings.model_copy(update={"max_containers_per_app": 5})
    with TestClient(create_web_app(small, engine=engine)) as client:
        r = client.put("/api/v1/apps/shop/scale", json={"processes": {"web": 3, "worker": 3}}, headers=auth)
        assert r.status_code == 422 and "that makes 6 containers; an app may run at most 5" in r.text
        assert client.get("/api/v1/apps/shop", headers=auth).json()["scale"] == {} and jobs(engine) == []
        ok = client.put("/api/v1/apps/shop/scale", json={"processes": {"web": 3, "worker": 2}}, headers=auth)
        assert ok.status_code == 202 and ok.json()["formation"] == {"web": 3, "worker": 2}, ok.text
