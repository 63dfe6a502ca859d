"""What a repository's build may read (issue 14): not another app's image
by any name or id, not an untagged intermediate image, and not a file
outside its own tree through a symlink (the agent reading it is root). The
engine's store is a fake at the boundary; the real one is in
tests/integration/test_limits.py."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dockerfile
import pytest
from sqlalchemy import Engine

from agent import docker_engine
from agent.build_context import check_images_read
from agent.commands import parse_dockerfile
from paas.buildpack import BuildPlan, render_dockerfile
from paas.dockerfile import GoParseError, image_references, images_read, parse_here
from paas.dockerfile_lex import builder_flags, expand
from paas.errors import InvalidInput
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
ARG SET=yes
FROM ${BASE} AS build
FROM --platform=linux/amd64 build AS again
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


# Issue 27: each of these built from the victim's image while paas's own
# rules saw no reference to it (or one Docker does not read).
VICTIM = "paas/blog:v5"
READ_AS_DOCKER_DOES = [
    pytest.param(f"FROM\t{VICTIM}\n", id="a tab after FROM"),
    pytest.param(f"\ufeffFROM {VICTIM}\n", id="a byte-order mark before FROM"),
    pytest.param(f"FROM \ufeff{VICTIM}\n", id="a byte-order mark before the image"),
    pytest.param(f'FROM "{VICTIM}"\n', id="a quoted image"),
    pytest.param(
        f"# escape=`\nFROM python:3.11-slim\nRUN true \\\nFROM {VICTIM} AS v\n"
        "FROM python:3.11-slim\nCOPY --from=v /app /stolen\n",
        id="the escape directive: a backslash no longer continues the line",
    ),
    pytest.param(
        f"FROM python:3.11-slim\nRUN true \\\u00a0\nFROM {VICTIM}\n", id="a backslash then a no-break space"
    ),
    pytest.param(f"FROM python:3.11-slim\nRUN true \\\x1f\nFROM {VICTIM}\n", id="a backslash then \\x1f"),
    pytest.param(
        f"ARG IMG={VICTIM}\nFROM python:3.11-slim\nARG IMG=python:3.11-slim\nFROM $IMG\n",
        id="FROM reads the ARG before the first FROM, not the stage's",
    ),
    pytest.param(
        f"FROM python:3.11-slim\nRUN <<CMD\nFROM {VICTIM} AS v\nCMD\n",
        id="a heredoc's lines are instructions to Docker 20.10",
    ),
    pytest.param(
        f"FROM python:3.11-slim AS base\nONBUILD COPY --from={VICTIM} /app /stolen\nFROM base\n",
        id="an earlier stage's ONBUILD runs in a stage FROM it",
    ),
    pytest.param(
        f"# escape=`\nFROM python:3.11-slim\nCOPY --chown=1\\ --from={VICTIM} /app /stolen\n",
        id="with the backtick escape, newer Docker splits flags at a backslash-space",
    ),
    pytest.param(
        f"FROM python:3.11-slim\nRUN --mount=type=cache,target=/c,from={VICTIM} true\n", id="a cache mount"
    ),
]


@pytest.mark.parametrize("dockerfile", READ_AS_DOCKER_DOES)
def test_another_apps_image_is_found_however_the_dockerfile_is_written(
    settings: Settings, engine: Engine, tmp_path: Path, dockerfile: str
) -> None:
    docker = RecordingEngine(STORE)
    result = deploy_once(settings, engine, _repo(tmp_path / "repo", {"Dockerfile": dockerfile}), docker)
    assert not result.ok and f"'{VICTIM}', an image of another app" in result.error, result.error
    assert docker.builds == []


@pytest.mark.parametrize(
    ("dockerfile", "refused"),
    [
        (f"FROM python:3.11-slim\nARG X={VICTIM}\nCOPY --from=$X /app /stolen\n", "holds a variable"),
        ("FROM python:3.11-slim\nRUN --mount=from=${X},target=/x true\n", "holds a variable"),
        ("# syntax=evil/frontend:1\nFROM python:3.11-slim\n", "custom frontend"),
        ("# syntax=docker/dockerfile:1-labs\nFROM python:3.11-slim\n", "custom frontend"),
        ("#!/bin/build\n# syntax=evil/frontend:1\nFROM python:3.11-slim\n", "custom frontend"),
        ("// syntax=evil/frontend:1\nFROM python:3.11-slim\n", "custom frontend"),
        ('{"syntax": "evil/frontend:1"}\n', "JSON directives"),
        ("# platform=linux/arm64\nFROM python:3.11-slim\n", "parser directive paas does not allow"),
        (
            f"# check=skip=all\n# escape=`\nFROM python:3.11-slim\nRUN true \\\nFROM {VICTIM} AS v\n",
            "escape directive differently",
        ),
        ("# escape=x\nFROM python:3.11-slim\n", "escape directive names"),
        (f"FROM python:3.11-slim\nRUN true \\\r\r\nFROM {VICTIM}\n", "carriage return"),
        (f"FROM python:3.11-slim\n#\x00\nFROM {VICTIM}\n", "NUL"),
        ("FROM python:${TARGETARCH}\n", "${TARGETARCH} is set by the builder"),
        ("ARG V=3.11\nFROM python:${V%.*}\n", "paas does not read"),
        ("FROM python:${MISSING:?}\n", "not set"),
        ("FROM 'python:$3'\n", "still holds a $"),
        (f"FROM python:3.11-slim\nRUN << CMD\nFROM {VICTIM} AS v\nCMD\n", "heredoc"),
        ("FROM python:3.11-slim\nRUN <<EOF ${A:-x}\nEOF\n", "heredoc"),
        ("FROM python:3.11-slim bad\n", "FROM takes an image"),
        ('FROM python:3.11-slim\nRUN --mount=type=bind,\\"from=x\\",target=/x true\n', "quoted --mount"),
        ("ARG $X=1\nFROM python:3.11-slim\n", "not a plain name"),
        ("FROM python:3.11-slim\nRUN <<EOF\ntrue\n", "does not parse"),
    ],
)
def test_what_docker_versions_read_differently_or_paas_cannot_resolve_is_refused(
    settings: Settings, engine: Engine, tmp_path: Path, dockerfile: str, refused: str
) -> None:
    docker = RecordingEngine(STORE)
    result = deploy_once(settings, engine, _repo(tmp_path / "repo", {"Dockerfile": dockerfile}), docker)
    assert not result.ok and refused in result.error, result.error
    assert docker.builds == []


@pytest.mark.parametrize("pulled", [False, True], ids=["on the server", "pulled for the build"])
@pytest.mark.parametrize(
    "trigger",
    [
        f"COPY --from={VICTIM} /app /stolen",
        f"RUN --mount=from={VICTIM},target=/x true",
        f"ONBUILD COPY --from={VICTIM} /app /stolen",  # runs in a stage FROM this one
    ],
)
def test_a_base_images_onbuild_triggers_are_checked_as_the_dockerfiles_lines(
    settings: Settings, engine: Engine, tmp_path: Path, trigger: str, pulled: bool
) -> None:
    """`Config.OnBuild` of a base image runs in this build: one that reads
    another app's image is refused, whether the base was on the server or
    pulled for this build."""
    if pulled:
        docker = RecordingEngine(STORE, registry={"evil/base:1": [trigger]})
    else:
        store = {**STORE, "evil/base:1": (["evil/base:1"], {})}
        docker = RecordingEngine(store, onbuild={"evil/base:1": [trigger]})
    repo = _repo(tmp_path / "repo", {"Dockerfile": "FROM evil/base:1 AS first\nFROM first\n"})
    result = deploy_once(settings, engine, repo, docker)
    assert not result.ok and f"'{VICTIM}', an image of another app" in result.error, result.error
    assert "an ONBUILD trigger of" in result.error and docker.builds == []
    assert docker.pulled == (["evil/base:1"] if pulled else [])


@pytest.mark.parametrize(
    ("trigger", "refused"),
    [
        ("FROM python:3.11-slim", "not one instruction"),
        ("COPY --from=x /a /b\nFROM other", "spans lines"),
        ("COPY --from=$SOURCE /a /b", "holds a variable"),
    ],
)
def test_a_trigger_docker_would_not_run_as_read_is_refused(
    settings: Settings, engine: Engine, tmp_path: Path, trigger: str, refused: str
) -> None:
    docker = RecordingEngine(STORE, registry={"evil/base:1": [trigger]})
    repo = _repo(tmp_path / "repo", {"Dockerfile": "FROM evil/base:1\n"})
    result = deploy_once(settings, engine, repo, docker)
    assert not result.ok and refused in result.error, result.error
    assert docker.builds == []


def test_an_image_the_server_lacks_is_pulled_then_checked(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    docker = RecordingEngine(STORE, registry={"public/base:2": []})
    dockerfile = "FROM public/base:2\nCOPY --from=python:3.11-slim /usr/bin/env /env\n"
    result = deploy_once(settings, engine, _repo(tmp_path / "repo", {"Dockerfile": dockerfile}), docker)
    assert result.error == "build: the recording engine builds nothing", result.error
    assert docker.pulled == ["public/base:2"] and len(docker.builds) == 1


def test_an_unresolvable_name_is_not_public(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    """A name the engine cannot find nor pull is refused, naming it: before,
    it was let through as "a public image", and the builder may still have
    resolved it (another spelling, a registry that answers later)."""
    docker = RecordingEngine(STORE, registry={})
    dockerfile = "FROM python:3.11-slim\nCOPY --from=nobody/nothing:1 /a /b\n"
    result = deploy_once(settings, engine, _repo(tmp_path / "repo", {"Dockerfile": dockerfile}), docker)
    assert not result.ok and "'nobody/nothing:1'" in result.error, result.error
    assert "an unresolvable name is not public" in result.error and "manifest unknown" in result.error
    assert docker.pulled == ["nobody/nothing:1"] and docker.builds == []


@pytest.mark.parametrize("name", ["paas/blog:v9", "docker.io/paas/shop:v7", "paas/nobody@sha256:" + "c" * 64])
def test_a_name_in_paass_own_repository_is_never_pulled(
    settings: Settings, engine: Engine, tmp_path: Path, name: str
) -> None:
    """`paas/blog:v9` does not exist yet: pulled from a registry, it would
    sit under the tag blog's next release takes (and a build racing that
    release would read blog's image)."""
    docker = RecordingEngine(STORE)
    result = deploy_once(settings, engine, _repo(tmp_path / "repo", {"Dockerfile": f"FROM {name}\n"}), docker)
    assert not result.ok and "paas's own repository" in result.error, result.error
    assert docker.pulled == [] and docker.builds == []


@pytest.mark.parametrize(
    "dockerfile",
    [
        "# syntax=docker/dockerfile:1\n# check=skip=all\nFROM python:3.11-slim\n",
        "# escape=`\n# syntax=docker.io/docker/dockerfile:1.7.1\nFROM python:3.11-slim\nRUN echo `\n  done\n",
        "FROM python:3.11-slim AS build\nRUN <<EOF\nset -e\necho FROM paas/blog:v5 is only text here\nEOF\n"
        "FROM build\nCOPY --from=BUILD /a /b\nCOPY --from=0 /a /b\n",
        "FROM paas/shop:v1\nRUN --mount=type=cache,target=/root/.cache true\n",
    ],
)
def test_an_ordinary_dockerfile_still_builds(
    settings: Settings, engine: Engine, tmp_path: Path, dockerfile: str
) -> None:
    docker = RecordingEngine(STORE, registry={})
    result = deploy_once(settings, engine, _repo(tmp_path / "repo", {"Dockerfile": dockerfile}), docker)
    assert result.error == "build: the recording engine builds nothing", result.error


def test_build_args_that_steer_the_builder_are_refused(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim\n")
    docker = RecordingEngine(STORE)
    for args in ({"BUILDKIT_SYNTAX": "evil/frontend:1"}, {"BUILDKIT_ATTEST_SBOM": f"generator={VICTIM}"}):
        with pytest.raises(InvalidInput, match="steers the builder"):
            check_images_read(docker, "shop", tmp_path, "Dockerfile", args)  # type: ignore[arg-type]
    check_images_read(docker, "shop", tmp_path, "Dockerfile", {"PIP_INDEX": "x"})  # type: ignore[arg-type]


def test_build_args_reach_from_as_each_builder_reads_them() -> None:
    """The classic builder expands one ARG line at once, BuildKit one name
    after the other: both readings are checked."""
    text = "ARG A=python:3.11-slim B=$A\nFROM $B\n"
    assert image_references(text) == ["python:3.11-slim"]  # BuildKit; classic: B is empty, and stops
    text = "ARG A=python\nARG A\nFROM ${A:-debian}:12\n"
    assert image_references(text) == ["debian:12", "python:12"]  # classic: the second ARG unsets A
    assert image_references("ARG A=x\nFROM $A\n", {"A": "python:3.12"}) == ["python:3.12"]
    assert image_references("FROM ${HTTP_PROXY:-python}:3.12\n", {"HTTP_PROXY": "x"}) == [
        "x:3.12",
        "python:3.12",
    ]
    # a build arg gives BuildKit's platform variables a known value
    assert image_references("ARG TARGETARCH\nFROM python:3.12-${TARGETARCH}\n", {"TARGETARCH": "slim"}) == [
        "python:3.12-slim"
    ]
    # the classic builder stops at what is no image reference; BuildKit goes on past an unused
    # stage, so a reference paas cannot read would hide what follows it: refused
    for unread in ('COPY --from="a b" /a /b\n', "FROM ${NONE}\n", "FROM [::1]:1/x AS never\n"):
        with pytest.raises(InvalidInput, match="refused .BuildKit would build on past it"):
            image_references(
                f"FROM python:3.11-slim\n{unread}FROM python:3.12-slim\nCOPY --from=paas/blog:v5 / /x\n"
            )


@pytest.mark.parametrize("installer", ["requirements", "uv", "poetry", "pipenv", "pyproject"])
def test_the_generated_dockerfile_reads_its_base_image_only(installer: str) -> None:
    plan = BuildPlan(
        installer=installer,
        installer_label=installer,
        base_image="python:3.12-slim",
        python_version="3.12",
        command="gunicorn app:app",
        entry=None,
        server_packages=("gunicorn",),
        install_project=True,
        pipfile_lock=True,
    )
    text = render_dockerfile(plan, app="shop", port=8000, data_path="/data")
    assert image_references(text) == ["python:3.12-slim"]


def test_a_generated_build_passes_the_check(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    docker = RecordingEngine(STORE, registry={})
    files = {"requirements.txt": "flask\n", "app.py": "from flask import Flask\napp = Flask(__name__)\n"}
    result = deploy_once(settings, engine, _repo(tmp_path / "repo", files), docker)
    assert result.error == "build: the recording engine builds nothing", result.error
    assert docker.pulled == []


@pytest.mark.parametrize(
    ("word", "expanded"),
    [
        ("${A:-x}", "x"),
        ("${E:-x}", "x"),
        ("${E-x}", ""),
        ("${A-x}", "x"),
        ("${S:+x}", "x"),
        ("${E:+x}", ""),
        ("${E+x}", "x"),
        ("'$S'\"$S\"\\$S", "$Sset$S"),
        ('"a\\b\\"c"', 'a\\b"c'),
        ("a$", "a$"),
        ("$1$@x", "x"),
        ("${S:-${A:-y}}z", "setz"),
    ],
)
def test_words_expand_as_docker_expands_them(word: str, expanded: str) -> None:
    assert expand(word, {"S": "set", "E": ""}, "\\") == expanded


def test_flags_are_split_as_docker_splits_them() -> None:
    for line in [
        "COPY --from=a --chown=1:1 /a /b",
        'COPY "--from=a b" --chmod=7 x y',
        "COPY --from=a\\ b c d",
        "COPY --chown='1 2' --from=x\u00e0--link y z",
        "RUN -- --mount=from=x true",
    ]:
        [command] = dockerfile.parse_string(line)
        assert builder_flags(line, "\\") == list(command.flags), line


class _PullingAPI:
    """docker.APIClient at the door's boundary: what a pull streams back."""

    chunks: list[dict[str, object]] = []
    hang = threading.Event()
    asked: tuple[str, str] | None = None

    def __init__(self, **_kwargs: object) -> None:
        self.hooks: dict[str, list[object]] = {"response": []}

    def pull(self, repository: str, *, tag: str, stream: bool, decode: bool) -> Iterator[dict[str, object]]:
        _PullingAPI.asked = (repository, tag)
        if not self.chunks:
            self.hang.wait(10)  # a registry that never answers
        yield from self.chunks

    def close(self) -> None:
        pass


DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("ref", "chunks", "outcome", "asked"),
    [
        ("python:3.12-slim", [{"status": "Downloaded"}], None, ("python", "3.12-slim")),
        (
            f"nobody/nothing@{DIGEST}",
            [{"error": "x", "errorDetail": {"message": "manifest unknown"}}],
            "manifest unknown",
            ("nobody/nothing", DIGEST),
        ),
        ("slow/registry", [], "the pull took longer than 0.2s", ("slow/registry", "latest")),
    ],
)
def test_the_engine_door_pulls_with_a_timeout(
    monkeypatch: pytest.MonkeyPatch,
    ref: str,
    chunks: list[dict[str, object]],
    outcome: str | None,
    asked: tuple[str, str],
) -> None:
    monkeypatch.setattr(docker_engine.docker, "APIClient", _PullingAPI)
    monkeypatch.setattr(_PullingAPI, "chunks", chunks)
    monkeypatch.setattr(_PullingAPI, "hang", threading.Event())
    door = docker_engine.DockerEngine(client=SimpleNamespace(api=SimpleNamespace(api_version="1.41")))
    started = time.monotonic()
    try:
        assert door.pull(ref, timeout=0.2) == outcome
    finally:
        _PullingAPI.hang.set()
    assert time.monotonic() - started < 5 and _PullingAPI.asked == asked


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


PARSED_ALIKE = [
    "FROM python:3.11-slim AS base\nRUN --mount=type=cache,target=/root/.cache pip install x\n",
    'FROM base\nCOPY --from=base ["/a", "/b"]\nONBUILD RUN echo hi\nCMD ["sh", "-c", "exec x"]\n',
    "# syntax=docker/dockerfile:1\nFROM debian:12\nRUN <<EOF\necho a\nEOF\n",
    "FROM x\nENV A=1 B=2\nLABEL a=b\nHEALTHCHECK CMD true\n",
]


@pytest.mark.parametrize("text", PARSED_ALIKE)
def test_the_agent_reads_a_dockerfile_in_a_process_of_its_own_as_docker_s_parser_does(text: str) -> None:
    assert parse_dockerfile(text) == parse_here(text)


def test_what_docker_s_parser_refuses_in_its_own_process_is_refused_alike() -> None:
    refused = "FROM x\nRUN <<EOF\n"  # an unterminated heredoc
    with pytest.raises(GoParseError) as here:
        parse_here(refused)
    with pytest.raises(GoParseError) as apart:
        parse_dockerfile(refused)
    assert str(apart.value) == str(here.value) == "unterminated heredoc"
    with pytest.raises(InvalidInput, match="does not parse: unterminated heredoc"):
        images_read(refused, parse=parse_dockerfile)


def test_each_distinct_text_is_parsed_once_however_often_triggers_are_read_again() -> None:
    calls: list[str] = []

    def counting(text: str) -> tuple[Any, ...]:
        calls.append(text)
        return parse_here(text)

    triggers = "".join(f"ONBUILD RUN echo {i}\n" for i in range(20))
    text = "FROM python:3.11-slim AS a\n" + triggers + "FROM a\n" * 20
    assert images_read(text, parse=counting)[0].ref == "python:3.11-slim"
    assert len(calls) == len(set(calls)) == 21  # the file and its 20 triggers, each once


def test_a_dockerfile_with_too_many_distinct_triggers_is_refused() -> None:
    triggers = "".join(f"ONBUILD RUN echo {i}\n" for i in range(250))
    with pytest.raises(InvalidInput, match="more than 200 distinct instructions"):
        images_read("FROM python:3.11-slim AS a\n" + triggers + "FROM a\n")
