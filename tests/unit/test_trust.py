"""The agent's re-check of rows read from the shared database: a row web
could have written (it is taken over) is refused, naming the field, before
any value of it reaches argv, a path, a template or the Docker API."""

from __future__ import annotations

import subprocess
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
from paas.models import App, Deployment, Job
from paas.settings import Settings
from paas.trust import UntrustedRow, check_app, check_hostname, check_job, check_release

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


def test_rows_as_paas_writes_them_pass() -> None:
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
    ("hostname", "shop.example.com\n", "hostname"),
    ("hostname", "shop.example.com;\n}", "hostname"),
    ("hostname", "../../etc/passwd", "hostname"),
]


@pytest.mark.parametrize(("kind", "row", "field"), POISONED)
def test_a_poisoned_row_is_refused_naming_its_field(kind: str, row: Any, field: str) -> None:
    check = {
        "app": check_app,
        "job": check_job,
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
