"""Each door says what went wrong as a kind, read once where the error is
caught (an errno, the engine's status, the tool's own words); the pipeline
reads the kind, never the message."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from docker.errors import APIError, DockerException, ImageNotFound
from git.exc import GitCommandError
from sqlalchemy.exc import OperationalError

from agent import source
from agent.commands import CommandResult
from agent.docker_engine import DockerEngine, EngineError
from agent.nginx import NginxError, NginxSites
from agent.steps import disk_full
from paas.db import database_full
from paas.errors import ErrorKind, NotFound, StepFailed, found
from paas.settings import Settings


def _answer(status: int) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    return response


def _engine_raising(exc: Exception) -> DockerEngine:
    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise exc

    return DockerEngine(client=SimpleNamespace(images=SimpleNamespace(get=fail)))


@pytest.mark.parametrize(
    ("raised", "kind"),
    [
        (
            APIError("500", _answer(500), "write /var/lib/docker/tmp/x: no space left on device"),
            ErrorKind.disk_full,
        ),
        (APIError("500", _answer(500), "failed to register layer: disk quota exceeded"), ErrorKind.disk_full),
        (
            APIError("500", _answer(500), "Bind for 127.0.0.1:20001 failed: port is already allocated"),
            ErrorKind.port_taken,
        ),
        (APIError("409", _answer(409), "the container name is already in use"), ErrorKind.conflict),
        (APIError("404", _answer(404), "no such object"), ErrorKind.not_found),
        (ImageNotFound("no such image"), ErrorKind.not_found),
        (DockerException("something else"), ErrorKind.other),
    ],
)
def test_the_engine_door_names_the_kind(raised: Exception, kind: ErrorKind) -> None:
    with pytest.raises(EngineError) as caught:
        _engine_raising(raised).image_config("paas/shop:v1")
    assert caught.value.kind is kind


def test_git_and_nginx_say_a_full_disk_in_the_systems_words(settings: Settings) -> None:
    full = GitCommandError(["git", "fetch"], 128, stderr=b"fatal: write error: No space left on device")
    assert source._failed("cannot fetch", full).kind is ErrorKind.disk_full
    gone = GitCommandError(["git", "fetch"], 128, stderr=b"fatal: remote error: upload-pack: not our ref")
    assert source._failed("commit x is not on the remote", gone, otherwise=ErrorKind.not_found).kind is (
        ErrorKind.not_found
    )

    said = 'nginx: [emerg] open() "/run/nginx.pid" failed (28: No space left on device)'
    sites = NginxSites(settings, runner=lambda args, **_kw: CommandResult(tuple(args), 1, said))
    with pytest.raises(NginxError, match="nginx -t failed") as caught:
        sites.apply("shop", "server {}\n")
    assert caught.value.kind is ErrorKind.disk_full


def test_a_full_disk_is_read_from_kinds_codes_and_errnos_never_from_words(
    settings: Settings, tmp_path: Path
) -> None:
    assert (disk_full(EngineError("x", kind=ErrorKind.disk_full), settings) or "").startswith("disk full (")
    assert disk_full(OSError(errno.ENOSPC, "No space left on device"), settings)
    wrapped = StepFailed("fetch", "cannot export")
    wrapped.__cause__ = source.SourceError("cannot export", kind=ErrorKind.disk_full)
    assert disk_full(wrapped, settings)  # what a step's failure wraps

    database = sqlite3.connect(tmp_path / "tiny.db")
    database.execute("PRAGMA max_page_count=2")
    database.execute("CREATE TABLE t (x)")
    with pytest.raises(sqlite3.OperationalError) as full:
        for _ in range(100):
            database.execute("INSERT INTO t VALUES (?)", ("x" * 1000,))
    assert database_full(full.value) and database_full(OperationalError("INSERT", {}, full.value))
    assert disk_full(OperationalError("INSERT", {}, full.value), settings)

    assert disk_full(EngineError("no space left on device"), settings) is None  # words of no kind
    assert disk_full(RuntimeError("database or disk is full"), settings) is None


def test_a_lookup_that_found_nothing_is_not_found() -> None:
    row = object()
    assert found(row, "no app named 'shop'") is row
    assert found(0, "no job 0") == 0  # only None is missing
    with pytest.raises(NotFound, match="^no app named 'shop'$") as caught:
        found(None, "no app named 'shop'")
    assert caught.value.status_code == 404
