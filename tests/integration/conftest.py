"""Integration fixtures: the real Docker engine, nginx and git.

These tests fail (they never skip) when a real part is missing: run them
through scripts/test.sh, which installs and starts what they need.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from testkit.harness import Nginx, Pebble, Stack

BASE_IMAGE = "python:3.11-slim"


@pytest.fixture(scope="session")
def docker_ready() -> None:
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"no Docker engine ({exc}); run scripts/test.sh, which starts one")
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"no {BASE_IMAGE} image; run scripts/test.sh, which builds one")
    for tool in ("nginx", "git"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.fail(f"{tool} is not installed; run scripts/test.sh")


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory, docker_ready: None) -> Iterator[Nginx]:
    server = Nginx(tmp_path_factory.mktemp("nginx"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, nginx: Nginx) -> Iterator[Stack]:
    paas = Stack(tmp_path_factory.mktemp("paas"), nginx)
    paas.start()
    yield paas
    paas.stop()
    paas.remove_everything()


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory, nginx: Nginx) -> Iterator[Pebble]:
    """Let's Encrypt's test CA, its DNS answering 127.0.0.1 (the module's nginx) for every name."""
    ca = Pebble(tmp_path_factory.mktemp("pebble"), http_port=nginx.port)
    ca.start()
    yield ca
    ca.stop()
