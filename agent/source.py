"""Fetch: one cached bare clone per app (GitPython), exported per build.

The commit's tree is checked out by git itself into a fresh build directory
(``read-tree -u`` through a private, throwaway index), so the build context
is exactly the commit: no .git, no leftovers of an earlier build. The agent
never unpacks an archive of untrusted content: git refuses paths that climb
out of the work tree or pass through a symlink. Any git URL works: https,
ssh, or a local path.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import git
from git.exc import GitCommandError

__all__ = ["CommitInfo", "SourceCache", "SourceError"]

GIT_TIMEOUT = 600
_COMMIT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class SourceError(Exception):
    pass


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    message: str


class SourceCache:
    def __init__(self, repos_dir: Path) -> None:
        self._dir = repos_dir

    def _repo(self, app: str, url: str) -> git.Repo:
        path = self._dir / f"{app}.git"
        if path.exists():
            repo = git.Repo(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            repo = git.Repo.init(path, bare=True)
        repo.git.update_environment(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true")
        if "origin" in [r.name for r in repo.remotes]:
            origin = repo.remote("origin")
            if origin.url != url:
                origin.set_url(url)
        else:
            repo.create_remote("origin", url)
        return repo

    def fetch(
        self, *, app: str, url: str, ref: str, commit: str, on_line: Callable[[str], None]
    ) -> CommitInfo:
        """Fetch ``ref`` from ``url``; return ``commit`` (or the ref's head)."""
        repo = self._repo(app, url)
        if not ref.startswith("refs/"):
            ref = f"refs/heads/{ref}"
        local = "refs/remotes/origin/" + ref.removeprefix("refs/heads/")
        on_line(f"git fetch {url} {ref}")
        try:
            repo.git.fetch(
                "--no-tags", "--force", "origin", f"+{ref}:{local}", kill_after_timeout=GIT_TIMEOUT
            )
        except GitCommandError as exc:
            raise SourceError(f"cannot fetch {ref} from {url}: {_stderr(exc)}") from exc
        target = commit or local
        try:
            obj = repo.commit(target)
        except (ValueError, GitCommandError, git.BadName):
            obj = self._fetch_commit(repo, commit)
        on_line(f"commit {obj.hexsha} {obj.summary!s}")
        return CommitInfo(sha=obj.hexsha, message=str(obj.message).strip())

    def _fetch_commit(self, repo: git.Repo, commit: str) -> git.Commit:
        """The pushed commit is no longer on the ref (a later force push): ask
        for it by id, which most servers allow for reachable commits."""
        try:
            repo.git.fetch("--no-tags", "origin", commit, kill_after_timeout=GIT_TIMEOUT)
            return repo.commit(commit)
        except (ValueError, GitCommandError, git.BadName) as exc:
            raise SourceError(f"commit {commit} is not on the remote") from exc

    def export(self, *, app: str, url: str, commit: str, dest: Path) -> None:
        """Write the commit's tree into ``dest`` (replaced if present)."""
        if not _COMMIT_ID.fullmatch(commit):
            raise SourceError(f"cannot export {commit!r}: not a full commit id")
        repo = self._repo(app, url)
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        with tempfile.TemporaryDirectory(prefix="paas-export-") as scratch:
            env = {"GIT_WORK_TREE": str(dest.resolve()), "GIT_INDEX_FILE": str(Path(scratch) / "index")}
            try:
                repo.git.read_tree("--reset", "-u", commit, env=env, kill_after_timeout=GIT_TIMEOUT)
            except GitCommandError as exc:
                raise SourceError(f"cannot export {commit}: {_stderr(exc)}") from exc
        _world_readable(dest)

    def forget(self, app: str) -> None:
        shutil.rmtree(self._dir / f"{app}.git", ignore_errors=True)


def _world_readable(root: Path) -> None:
    """Directories 0755, files 0644 (0755 if executable), whatever the agent's
    umask: Docker's COPY keeps these bits, and the image's non-root user must
    read its own source."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            path.chmod(0o755 if path.stat().st_mode & 0o100 else 0o644)


def _stderr(exc: GitCommandError) -> str:
    text = str(exc.stderr or exc).strip()
    return text.removeprefix("stderr:").strip().strip("'").strip()
