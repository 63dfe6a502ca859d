"""The interpreter users get, checked in seconds (issue 13).

install.sh builds paas on Debian 12's /usr/bin/python3 (3.11.2). A call that
this Python lacks failed every user's first deploy while the suite, run on a
newer Python, passed. These tests run on the venv scripts/test.sh makes from
that same interpreter: they import every module, and run a deploy's steps up
to the Docker engine (fetch, the commit checked out as the build context, the
Procfile, the generated Dockerfile) with a stand-in engine that only records
what it was handed.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from agent.docker_engine import EngineError
from agent.pipeline import DeployResult, Pipeline
from agent.source import SourceCache
from paas import services
from paas.crypto import Keyring
from paas.db import session_scope
from paas.envvars import change_env
from paas.models import Deployment, DeploymentStatus, EnvScope, Job
from paas.schemas import AppCreate, EnvChange, EnvSet
from paas.settings import Settings

SYSTEM_PYTHON = Path("/usr/bin/python3")
PACKAGES = ("paas", "agent", "web")


def test_the_tests_run_on_the_python_install_sh_builds_on() -> None:
    assert SYSTEM_PYTHON.exists(), "no /usr/bin/python3: paas supports Debian 12 and its Python"
    show = [str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version)"]
    system = subprocess.run(show, capture_output=True, text=True, check=True).stdout.strip()
    assert sys.version == system, (
        f"the tests run on Python {sys.version.split()[0]} ({sys.executable}), but install.sh builds on "
        f"{system.split()[0]} ({SYSTEM_PYTHON}); run them through scripts/test.sh"
    )


def test_requires_python_is_the_minimum_the_suite_checks() -> None:
    import tomllib

    from tests.conftest import MINIMUM_PYTHON

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=" + ".".join(map(str, MINIMUM_PYTHON))
    assert sys.version_info >= MINIMUM_PYTHON


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names += [info.name for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}.")]
    return sorted(name for name in names if not name.endswith(".__main__"))  # runs the CLI


@pytest.mark.parametrize("name", _modules())
def test_every_module_imports(name: str) -> None:
    importlib.import_module(name)


class RecordingEngine:
    """Stands in for the Docker engine at its door: keeps what a build was
    handed, then fails the build as an engine would."""

    def __init__(
        self,
        images: dict[str, tuple[list[str], dict[str, str]]] | None = None,
        *,
        registry: dict[str, list[str]] | None = None,
        onbuild: dict[str, list[str]] | None = None,
    ) -> None:
        self.builds: list[dict[str, Any]] = []
        self.images = dict(images or {})  # what the engine's store holds: ref -> (names, labels)
        # what a pull finds: ref -> its ONBUILD triggers; None: every name is a public image
        self.registry = registry
        self.onbuild = dict(onbuild or {})  # ONBUILD triggers of images in the store
        self.pulled: list[str] = []

    problem: str | None = None  # why BuildKit could not be capped on this engine
    said = "the recording engine builds nothing"  # what its build fails with

    def buildkit_problem(self) -> str | None:
        return self.problem

    def build(self, *, context: Path, dockerfile: str, **kwargs: Any) -> None:
        files = {
            p.relative_to(context).as_posix(): stat.S_IMODE(p.lstat().st_mode) for p in context.rglob("*")
        }
        self.builds.append(
            {
                "files": files,
                "dockerfile": (context / dockerfile).read_text(),
                "tag": kwargs["tag"],
                "buildkit": kwargs.get("buildkit"),
            }
        )
        raise EngineError(self.said)

    def remove_image(self, ref: str) -> bool:
        return False

    def image_names_and_labels(self, ref: str) -> tuple[list[str], dict[str, str]] | None:
        return self.images.get(ref)

    def pull(self, ref: str, *, timeout: float) -> str | None:
        self.pulled.append(ref)
        if self.registry is not None and ref not in self.registry:
            return "manifest unknown"
        self.images[ref] = ([ref], {})
        self.onbuild[ref] = list((self.registry or {}).get(ref, []))
        return None

    def image_config(self, ref: str) -> dict[str, Any]:
        return {"OnBuild": self.onbuild.get(ref) or None}


def _repository(root: Path) -> Path:
    files = {
        "svc/requirements.txt": "fastapi>=0.110,<1\n",
        "svc/main.py": "from fastapi import FastAPI\n\napp = FastAPI()\n",
        "svc/Procfile": "worker: python -m worker\n",
        "svc/bin/run.sh": "#!/bin/sh\nexec python -m worker\n",
        "README.md": "outside the build context\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "svc" / "bin" / "run.sh").chmod(0o755)
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    return root


def deploy_once(
    settings: Settings,
    engine: Engine,
    repo: Path,
    docker: RecordingEngine,
    *,
    build_secrets: dict[str, str] | None = None,
    **app: Any,
) -> DeployResult:
    """Create app ``shop`` from the local ``repo`` and run one deploy job
    through the real pipeline, up to ``docker`` (under a tight umask)."""
    settings = settings.model_copy(update={"allow_local_repos": True})
    keyring = Keyring(settings.keys_dir, private=True)
    with session_scope(engine) as session:
        created, _secret = services.create_app(
            session,
            spec=AppCreate(name="shop", repo_url=str(repo), **app),
            actor="tests",
            keyring=keyring,
            settings=settings,
        )
        if build_secrets:
            sets = [
                EnvSet(key=k, value=v, secret=True, scope=EnvScope.build) for k, v in build_secrets.items()
            ]
            change_env(session, name="shop", change=EnvChange(set=sets), actor="tests", keyring=keyring)
        job_id = services.request_deploy(session, app=created, actor="tests", trigger="manual").id
    with session_scope(engine) as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
    pipeline = Pipeline(
        settings=settings,
        db=engine,
        docker=docker,  # type: ignore[arg-type]
        nginx=None,  # type: ignore[arg-type]
        source=SourceCache(settings.repos_dir, allow_local=True),
        instance="test",
        keyring=keyring,
    )
    old_umask = os.umask(0o077)  # the build context is readable whatever the agent's umask
    try:
        return pipeline.run(job)
    finally:
        os.umask(old_umask)


def test_a_deploy_runs_every_step_before_the_engine(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    docker = RecordingEngine()
    result = deploy_once(settings, engine, _repository(tmp_path / "repo"), docker, source_dir="svc")

    # it got as far as the engine: fetch, checkout, Procfile and Dockerfile all ran here
    assert not result.ok and result.error == "build: the recording engine builds nothing"
    [build] = docker.builds
    assert build["tag"] == "paas/shop:v1"
    assert build["files"] == {
        "requirements.txt": 0o644,
        "main.py": 0o644,
        "Procfile": 0o644,
        "bin": 0o755,
        "bin/run.sh": 0o755,
        ".paas.Dockerfile": 0o644,
    }
    assert build["dockerfile"].startswith("# Generated by paas for shop (requirements.txt")
    assert "FROM python:3.11-slim" in build["dockerfile"]
    assert "uvicorn.workers.UvicornWorker" in build["dockerfile"]
    with session_scope(engine) as session:
        dep = session.get(Deployment, result.deployment_id)
        assert dep is not None and dep.status == DeploymentStatus.failed
        assert len(dep.commit) == 40 and dep.commit_message == "first"
        assert set(dep.timings) == {"fetch", "build"}
    assert not any(settings.builds_dir.iterdir()), "the build directory is removed after the attempt"
    log = settings.release_log("shop", 1).read_text()
    assert "no Dockerfile in svc at" in log and "!!! deploy failed at build" in log


@pytest.mark.parametrize("problem", [None, "the engine uses the systemd cgroup driver"])
def test_an_engine_where_buildkit_cannot_be_capped_builds_classic_and_says_why(
    settings: Settings, engine: Engine, tmp_path: Path, problem: str | None
) -> None:
    """BuildKit is the default (issue 31); on an engine whose build steps paas
    cannot cap (the systemd cgroup driver) the build says so and falls back,
    with a Dockerfile the classic builder reads (no mounts)."""
    docker = RecordingEngine()
    docker.problem = problem
    result = deploy_once(settings, engine, _repository(tmp_path / "repo"), docker, source_dir="svc")
    [build] = docker.builds
    log = settings.release_log("shop", result.version).read_text()
    if problem is None:
        assert build["buildkit"] is not None and "--mount=type=cache" in build["dockerfile"]
        assert "classic" not in log
    else:
        assert build["buildkit"] is None and "--mount" not in build["dockerfile"]
        assert "PIP_NO_CACHE_DIR=1" in build["dockerfile"]
        assert f"building with the classic builder: {problem}" in log


@pytest.mark.parametrize("problem", [None, "the engine uses the systemd cgroup driver"])
def test_build_secrets_reach_a_buildkit_build_by_their_ids_and_are_never_built_without(
    settings: Settings, engine: Engine, tmp_path: Path, problem: str | None
) -> None:
    """A build that could not be given its secrets (a classic build) would
    install from the public index what it meant to take from a private one:
    refused. With BuildKit, the generated Dockerfile mounts PIP_INDEX_URL by
    the app's own id, and the engine is handed it by that id."""
    docker = RecordingEngine()
    docker.problem = problem
    index = "https://user:s3cret@pypi.example/simple"
    result = deploy_once(
        settings, engine, _repository(tmp_path / "repo"), docker, source_dir="svc",
        build_secrets={"PIP_INDEX_URL": index},
    )  # fmt: skip
    log = settings.release_log("shop", result.version).read_text()
    assert index not in log and "s3cret" not in log
    if problem:
        assert docker.builds == [] and not result.ok
        assert result.error == (
            "build: build secrets (PIP_INDEX_URL) need a BuildKit build, and this one would be classic: "
            f"{problem}"
        )
        return
    [build] = docker.builds
    [(secret_id, value)] = build["buildkit"].secrets.items()
    assert value == index and secret_id.startswith("paas/shop/PIP_INDEX_URL-")
    assert (
        f"--mount=type=secret,target=/run/secrets/PIP_INDEX_URL,id={secret_id}"
        in build["buildkit"].dockerfile_text
    )
    assert 'PIP_INDEX_URL="$(cat /run/secrets/PIP_INDEX_URL)"' in build["dockerfile"]
    assert index not in build["dockerfile"]


@pytest.mark.parametrize("builder", ["buildkit", "classic"])
def test_the_classic_builders_buildkit_error_names_why_buildkit_was_off(
    settings: Settings, engine: Engine, tmp_path: Path, builder: str
) -> None:
    repo = _repository(tmp_path / "repo")
    (repo / "svc" / "Dockerfile").write_text("FROM python:3.11-slim\nRUN --mount=type=cache,target=/c true\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "a Dockerfile of its own"], check=True)
    docker = RecordingEngine()
    docker.problem = "the engine uses the systemd cgroup driver"
    docker.said = "the --mount option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/"
    with_settings = settings.model_copy(update={"builder": builder})
    result = deploy_once(with_settings, engine, repo, docker, source_dir="svc")
    why = docker.problem if builder == "buildkit" else "PAAS_BUILDER=classic"
    assert result.error == (
        f"build: the Dockerfile needs BuildKit, which this build could not use ({why}): {docker.said}"
    )
