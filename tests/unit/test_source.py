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
from paas.schemas import shown_url
from paas.trust import UntrustedRow


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
    cache = SourceCache(tmp_path / "repos", allow_local=True)
    old = os.umask(0o077)
    try:
        info = cache.fetch(app="a", url=str(work), ref="main", commit="", on_line=lambda _l: None)
        cache.export(app="a", commit=info.sha, dest=tmp_path / "out")
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
    cache = SourceCache(tmp_path / "repos", allow_local=True)
    info = cache.fetch(app="a", url=str(work), ref="main", commit="", on_line=lambda _l: None)
    out = tmp_path / "out"
    out.mkdir()
    (out / "leftover.txt").write_text("from an earlier build\n")

    cache.export(app="a", commit=info.sha, dest=out)

    assert sorted(p.name for p in out.iterdir()) == ["app.py", "escape"]
    assert (out / "escape").is_symlink() and os.readlink(out / "escape") == str(outside)
    assert outside.read_text() == "untouched\n" and stat.S_IMODE(outside.stat().st_mode) == 0o600
    # the bare cache gets no index and no work tree of its own
    assert not (tmp_path / "repos" / "a.git" / "index").exists()


@pytest.mark.parametrize("commit", ["main", "--output=/tmp/x", "a" * 39, "A" * 40, "a" * 40 + "\n"])
def test_export_takes_only_a_full_commit_id(tmp_path: Path, commit: str) -> None:
    cache = SourceCache(tmp_path / "repos", allow_local=True)
    with pytest.raises(SourceError, match="not a full commit id"):
        cache.export(app="a", commit=commit, dest=tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "repos").exists()


def test_nothing_planted_in_a_cache_clone_runs(tmp_path: Path) -> None:
    """Hooks, a hooks path, an fsmonitor command, an upload-pack program or an
    included config put into the clone (web could, under the old layout) never
    run: git gets a fixed config, and the clone's own is rewritten."""
    marker = tmp_path / "pwned"
    work = tmp_path / "work"
    work.mkdir()
    (work / "app.py").write_text("print('hi')\n")
    _commit(work)
    cache = SourceCache(tmp_path / "repos", allow_local=True)
    cache.fetch(app="a", url=str(work), ref="main", commit="", on_line=lambda _l: None)
    clone = tmp_path / "repos" / "a.git"
    evil = tmp_path / "evil.sh"
    evil.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    evil.chmod(0o755)
    (clone / "hooks").mkdir(exist_ok=True)
    for hook in ("reference-transaction", "post-checkout", "post-merge", "pre-auto-gc"):
        (clone / "hooks" / hook).symlink_to(evil)
    included = tmp_path / "included.cfg"
    included.write_text(f"[core]\n\tfsmonitor = {evil}\n")
    with (clone / "config").open("a") as config:
        config.write(
            f"[core]\n\thooksPath = {tmp_path}\n\tfsmonitor = {evil}\n\tsshCommand = {evil}\n"
            f'[include]\n\tpath = {included}\n[remote "origin"]\n\turl = {work}\n\tuploadpack = {evil}\n'
        )
    for name in ("reference-transaction", "post-checkout"):
        (tmp_path / name).symlink_to(evil)  # what hooksPath would point at

    (work / "app.py").write_text("print('again')\n")
    subprocess.run(
        ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "2"]
    )
    info = cache.fetch(app="a", url=str(work), ref="main", commit="", on_line=lambda _l: None)
    cache.export(app="a", commit=info.sha, dest=tmp_path / "out")

    assert (tmp_path / "out" / "app.py").read_text() == "print('again')\n"
    assert not marker.exists()
    assert "fsmonitor" not in (clone / "config").read_text()


@pytest.mark.parametrize(
    ("url", "ref", "commit"),
    [
        ("--upload-pack=touch /tmp/x", "main", ""),
        ("https://github.com/o/r.git", "--output=/tmp/x", ""),
        ("https://github.com/o/r.git", "main\n", ""),
        ("https://github.com/o/r.git", "main", "--upload-pack=touch /tmp/x"),
        ("https://github.com/o/r.git\n", "main", ""),
    ],
)
def test_fetch_refuses_options_and_unchecked_values(tmp_path: Path, url: str, ref: str, commit: str) -> None:
    cache = SourceCache(tmp_path / "repos")
    with pytest.raises(SourceError, match="refusing to fetch"):
        cache.fetch(app="a", url=url, ref=ref, commit=commit, on_line=lambda _l: None)
    assert not (tmp_path / "repos").exists()


def test_an_app_name_that_is_a_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UntrustedRow):
        SourceCache(tmp_path / "repos").forget("../../etc")


def test_a_repository_on_this_server_needs_the_setting(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "app.py").write_text("print('hi')\n")
    _commit(work)
    for url in (str(work), f"file://{work}"):
        with pytest.raises(SourceError, match="PAAS_ALLOW_LOCAL_REPOS"):
            SourceCache(tmp_path / "repos").fetch(app="a", url=url, ref="main", commit="", on_line=print)
    assert not (tmp_path / "repos").exists()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://ghp_secret@github.com/o/r.git", "https://github.com/o/r.git"),
        ("https://bot:pw@example.com/r.git", "https://example.com/r.git"),
        ("ssh://git@github.com/o/r.git", "ssh://git@github.com/o/r.git"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        ("/srv/r.git", "/srv/r.git"),
    ],
)
def test_urls_in_logs_carry_no_credentials(url: str, shown: str) -> None:
    assert shown_url(url) == shown
