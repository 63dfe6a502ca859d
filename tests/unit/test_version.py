"""paas's version: one number in paas/__init__.py (the package's too), and
the source an installation was built from, as install.sh records it."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import paas
from paas import version as version_module


def test_the_package_and_the_code_agree() -> None:
    assert importlib.metadata.version("paas") == paas.__version__


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        (None, paas.__version__),
        ("g1a2b3c4d5e6f\n", f"{paas.__version__}+g1a2b3c4d5e6f"),
        ("", paas.__version__),
        ("g1a2 $(evil)", paas.__version__),  # only letters and digits are shown
    ],
)
def test_an_installation_shows_its_source(
    written: str | None, shown: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if written is not None:
        (tmp_path / version_module.SOURCE_FILE).write_text(written)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    version_module.version.cache_clear()
    try:
        assert version_module.version() == shown
    finally:
        version_module.version.cache_clear()


def test_the_command_and_readyz_report_it(client: TestClient) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "paas", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert shown == f"paas {version_module.version()}\n"
    assert client.get("/readyz").json() == {"status": "ok", "version": version_module.version()}
