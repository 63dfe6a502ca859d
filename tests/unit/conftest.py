"""Unit-test fixtures: a live API server on loopback for the CLI tests; the
GitHub stand-in and a teller wired to it for the outbox's tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import Engine

from agent.tell.teller import Teller
from paas.crypto import Keyring
from paas.settings import Settings
from testkit.harness import free_port
from tests.integration.github_standin import GitHubStandIn
from tests.unit.telling import TOKEN, Sent
from web.app import create_web_app


@pytest.fixture
def server(settings: Settings, engine: Engine) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        create_web_app(settings, engine=engine), host="127.0.0.1", port=port, log_level="warning"
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


@pytest.fixture
def github() -> Iterator[GitHubStandIn]:
    standin = GitHubStandIn(token=TOKEN, repo="octo/shop").start()
    yield standin
    standin.stop()


@pytest.fixture
def teller(settings: Settings, engine: Engine, github: GitHubStandIn) -> tuple[Teller, Sent]:
    sent = Sent()
    tuned = settings.model_copy(
        update={"github_api_url": github.url, "github_timeout": 5.0, "notify_retry_seconds": 0.01}
    )
    return Teller(tuned, engine, Keyring(settings.keys_dir, private=True), send_notification=sent), sent
