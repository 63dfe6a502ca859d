"""Fixtures shared by every test: fresh settings and a fresh, migrated
database per test (never a shared live one)."""

from __future__ import annotations

import sys

# The oldest Python paas supports (pyproject's requires-python; Debian 12 ships
# 3.11.2). Checked before anything of paas is imported, so an older interpreter
# gets this sentence rather than an ImportError from deep inside.
MINIMUM_PYTHON = (3, 11)
if sys.version_info < MINIMUM_PYTHON:
    import pytest

    pytest.exit(
        f"paas needs Python {'.'.join(map(str, MINIMUM_PYTHON))} or newer; this is {sys.version.split()[0]} "
        f"({sys.executable}). scripts/test.sh makes .venv from /usr/bin/python3.",
        returncode=4,
    )

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from paas import tokens
from paas.crypto import ensure_keys
from paas.db import make_engine, migrate, session_scope
from paas.settings import Settings, load_settings
from web.app import create_web_app


def pytest_report_header() -> list[str]:
    """Which interpreter ran the tests: the one install.sh builds on is the point."""
    return [f"python: {sys.version} at {sys.executable} (base {sys.base_prefix})"]


@pytest.fixture(autouse=True)
def _keep_umask() -> Iterator[None]:
    """Server commands set the process umask (as the daemons run); a test
    that calls one in-process must not change what the next test creates."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        run_dir=tmp_path / "run",
        domain="apps.test",
        public_url="http://paas.apps.test",
        nginx_conf_dir=tmp_path / "nginx",
        keys_dir=tmp_path / "keys",
        webhook_max_bytes=64 * 1024,
        acme=False,  # unit tests ask no CA; tests/unit/test_certs.py turns it on
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    migrate(settings)
    ensure_keys(settings.keys_dir)
    eng = make_engine(settings)
    yield eng
    eng.dispose()


@pytest.fixture
def token(engine: Engine) -> str:
    with session_scope(engine) as session:
        return tokens.create_token(session, name="tests")


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_web_app(settings, engine=engine)) as test_client:
        yield test_client


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
