"""Per-app build settings and image retention, with the real engine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from testkit.harness import GitRemote, Nginx, Stack
from tests.integration.test_operations import SERVER, wait_job

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, nginx: Nginx) -> Iterator[Stack]:
    paas = Stack(tmp_path_factory.mktemp("paas-keep"), nginx, PAAS_KEEP_RELEASES="2")
    paas.start()
    yield paas
    paas.stop()
    paas.remove_everything()


def monorepo(version: str) -> dict[str, str]:
    """The service lives in svc/, its Dockerfile in svc/docker/."""
    return {
        "README.md": "a monorepo\n",
        "svc/docker/Dockerfile": (
            'FROM python:3.11-slim\nWORKDIR /app\nCOPY server.py .\nCMD ["python3", "server.py"]\n'
        ),
        "svc/server.py": SERVER.format(version=version),
    }


def test_source_dir_dockerfile_path_and_retention(stack: Stack, tmp_path_factory: Any) -> None:
    name = f"mono{os.getpid() % 100000}"
    repo = GitRemote(tmp_path_factory.mktemp("mono"))
    created = stack.api(
        "POST",
        "/apps",
        json={
            "name": name,
            "repo_url": str(repo.bare),
            "source_dir": "svc",
            "dockerfile": "docker/Dockerfile",
            "health_interval": 0.3,
        },
    )
    assert created.status_code == 201, created.text
    secret = created.json()["webhook_secret"]
    for n in range(1, 5):
        r = stack.webhook(name, secret, repo.commit(monorepo(f"m{n}"), f"m{n}"))
        assert r.status_code == 202
        assert wait_job(stack, r.json()["job_id"])["state"] == "done", stack.release_log(name, n)
        assert stack.get_app(name).json() == {"version": f"m{n}"}
    client = docker.from_env()
    tags = sorted(t for i in client.images.list(filters={"label": f"paas.app={name}"}) for t in i.tags)
    assert tags == [f"paas/{name}:v3", f"paas/{name}:v4"]  # PAAS_KEEP_RELEASES=2
    log = stack.release_log(name, 4)
    assert f"removed old image paas/{name}:v2" in log
