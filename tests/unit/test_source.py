"""Exporting a commit for a build: git itself checks the tree out (no
archive is unpacked by the agent), the tree is readable by the image's
non-root user whatever the agent's umask (Docker's COPY keeps the bits), and
a symlink in the repository stays a link inside the build directory."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from agent.source import SourceCache, SourceError


def _commit(work: Path) -> None:
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)


def test_export_is_world_readable_under_a_tight_umask(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "pkg").mkdir(parents=True)
    (work / "pkg" / "mod.py").write_text("x = 1\n")
    (work / "run.sh").write_text("#!/bin/sh\n")
    (work / "run.sh").chmod(0o755)
    _commit(work)
    cache = SourceCache(tmp_path / "repos")
    old = os.umask(0o077)
    try:
        info = cache.fetch(app="a", url=str(work), ref="main", commit="", on_line=lambda _l: None)
        cache.export(app="a", url=str(work), commit=info.sha, dest=tmp_path / "out")
    finally:
        os.umask(old)
    out = tmp_path / "out"
    mode = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*")}
    assert mode == {"pkg": 0o755, "pkg/mod.py": 0o644, "run.sh": 0o755}
    assert stat.S_IMODE(out.stat().st_mode) == 0o755


def test_export_replaces_the_directory_and_keeps_links_as_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("untouched\n")
    outside.chmod(0o600)
    work = tmp_path / "work"
    work.mkdir()
    (work / "app.py").write_text("print('hi')\n")
    (work / "escape").symlink_to(outside)
    _commit(work)
    cache = SourceCache(tmp_path / "repos")
    info = cache.fetch(app="a", url=str(work), ref="main", commit="", on_line=lambda _l: None)
    out = tmp_path / "out"
    out.mkdir()
    (out / "leftover.txt").write_text("from an earlier build\n")

    cache.export(app="a", url=str(work), commit=info.sha, dest=out)

    assert sorted(p.name for p in out.iterdir()) == ["app.py", "escape"]
    assert (out / "escape").is_symlink() and os.readlink(out / "escape") == str(outside)
    assert outside.read_text() == "untouched\n" and stat.S_IMODE(outside.stat().st_mode) == 0o600
    # the bare cache gets no index and no work tree of its own
    assert not (tmp_path / "repos" / "a.git" / "index").exists()


@pytest.mark.parametrize("commit", ["main", "--output=/tmp/x", "a" * 39, "A" * 40, "a" * 40 + "\n"])
def test_export_takes_only_a_full_commit_id(tmp_path: Path, commit: str) -> None:
    cache = SourceCache(tmp_path / "repos")
    with pytest.raises(SourceError, match="not a full commit id"):
        cache.export(app="a", url=str(tmp_path), commit=commit, dest=tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "repos").exists()
