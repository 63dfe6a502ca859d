"""What a repository's build may read (issue 14): not another app's image
by any name or id, not an untagged intermediate image, and not a file
outside its own tree through a symlink (the agent reading it is root). The
engine's store is a fake at the boundary; the real one is in
tests/integration/test_limits.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import Engine

from paas.dockerfile import image_references
from paas.settings import Settings
from tests.unit.test_platform import RecordingEngine, deploy_once

OTHER_ID = "sha256:" + "b" * 64
STORE = {
    "python:3.11-slim": (["python:3.11-slim"], {}),
    "paas/shop:v1": (["paas/shop:v1"], {"paas.app": "shop"}),
    "paas/blog:v5": (["paas/blog:v5"], {"paas.app": "blog"}),
    OTHER_ID: (["paas/blog:v5"], {"paas.app": "blog"}),
    "bbbbbbbbbbbb": (["paas/blog:v5"], {"paas.app": "blog"}),
    "c0ffee": ([], {}),  # an intermediate layer of some build
}


def _repo(root: Path, files: dict[str, str], links: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text)
    for name, target in (links or {}).items():
        (root / name).symlink_to(target)
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    return root


def test_image_references_follow_stages_args_and_flags() -> None:
    text = """\
# syntax is irrelevant here
ARG BASE=python:3.11-slim
FROM ${BASE} AS build
FROM --platform=linux/amd64 build AS again
ARG SET=yes
COPY --from=build /a /b
COPY --chown=1:1 --from=paas/blog:v5 /app /stolen
RUN --mount=type=bind,from=paas/x:v1,target=/x true
FROM ${SET:+paas/y:v2}
FROM ${UNSET:-paas/z:v3} \\
  AS z
COPY --from=0 / /
FROM scratch
"""
    assert image_references(text) == [
        "python:3.11-slim",
        "paas/blog:v5",
        "paas/x:v1",
        "paas/y:v2",
        "paas/z:v3",
    ]
    assert image_references("ARG BASE=python:3.11\nFROM $BASE\n", {"BASE": "paas/blog:v5"}) == [
        "paas/blog:v5"
    ]


@pytest.mark.parametrize(
    ("dockerfile", "refused"),
    [
        ("FROM paas/blog:v5\n", "'paas/blog:v5', an image of another app"),
        (f"FROM {OTHER_ID}\n", "an image of another app"),
        ("FROM bbbbbbbbbbbb\n", "an image of another app"),
        ("FROM python:3.11-slim\nCOPY --from=paas/blog:v5 /app /app\n", "an image of another app"),
        ("ARG B=paas/blog:v5\nFROM $B\n", "an image of another app"),
        ("FROM c0ffee\n", "'c0ffee', an untagged image"),
    ],
)
def test_a_build_that_reads_another_apps_image_is_refused(
    settings: Settings, engine: Engine, tmp_path: Path, dockerfile: str, refused: str
) -> None:
    docker = RecordingEngine(STORE)
    result = deploy_once(settings, engine, _repo(tmp_path / "repo", {"Dockerfile": dockerfile}), docker)
    assert not result.ok and refused in result.error, result.error
    assert docker.builds == []  # the engine was never asked


def test_a_build_may_read_base_images_and_its_own(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    docker = RecordingEngine(STORE)
    dockerfile = "FROM python:3.11-slim\nCOPY --from=paas/shop:v1 /app /previous\nFROM unknown/public:1\n"
    result = deploy_once(settings, engine, _repo(tmp_path / "repo", {"Dockerfile": dockerfile}), docker)
    assert result.error == "build: the recording engine builds nothing" and len(docker.builds) == 1


def test_links_out_of_the_repository_are_never_read_or_written(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """A root-only file behind a symlink named .python-version, Procfile or
    Dockerfile is not read into the log; a link named like the generated
    Dockerfile does not redirect root's write."""
    secret = tmp_path / "shadow"
    secret.write_text("root:$y$secret-hash:19000:0:99999:7:::\n")
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    files = {"requirements.txt": "flask\n", "app.py": "from flask import Flask\napp = Flask(__name__)\n"}
    links = {".python-version": str(secret), "Procfile": str(secret), ".paas.Dockerfile": str(victim)}
    docker = RecordingEngine()
    result = deploy_once(settings, engine, _repo(tmp_path / "repo", files, links), docker)

    assert result.error == "build: the recording engine builds nothing", result.error
    [build] = docker.builds
    assert "FROM python:3.11-slim" in build["dockerfile"]  # no pin read from the link
    assert victim.read_text() == "untouched\n"
    log = settings.release_log("shop", 1).read_text()
    assert "secret-hash" not in log and "secret-hash" not in result.error


def test_a_dockerfile_that_links_out_of_the_repository_is_not_one(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("FROM root-secret-line\n")
    docker = RecordingEngine()
    result = deploy_once(settings, engine, _repo(tmp_path / "repo", {}, {"Dockerfile": str(secret)}), docker)
    assert not result.ok and "no Dockerfile and nothing to build a Python app from" in result.error
    assert docker.builds == [] and "root-secret" not in settings.release_log("shop", 1).read_text()
