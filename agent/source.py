"""Fetch: one cached bare clone per app (GitPython), exported per build.

The commit's tree is checked out by git itself into a fresh build directory
(``read-tree -u`` through a private, throwaway index), so the build context
is exactly the commit: no .git, no leftovers of an earlier build. The agent
never unpacks an archive of untrusted content: git refuses paths that climb
out of the work tree or pass through a symlink. Any git URL works: https,
ssh, or a local path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import git
from git.exc import GitCommandError

from paas.errors import ErrorKind, PaasError, says_disk_full
from paas.files import atomic_write
from paas.schemas import COMMIT_ID, FULL_COMMIT, check_branch, check_repo_url, is_local_repo, shown_url
from paas.trust import check_app_name

__all__ = ["CommitInfo", "SourceCache", "SourceError"]

GIT_TIMEOUT = 600


class SourceError(PaasError):
    """git could not fetch or check out what a deploy asked for; ``kind``
    says a full disk (or quota) when git's stderr does, read here, once."""


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    message: str


# Git runs with this configuration and no other: not the system's, not root's
# ~/.gitconfig, and the keys below override whatever the repository's own
# config says. No hook, no fsmonitor command, no ext:: transport.
_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "true",
    "GIT_CONFIG_COUNT": "3",
    "GIT_CONFIG_KEY_0": "core.hooksPath",
    "GIT_CONFIG_VALUE_0": os.devnull,
    "GIT_CONFIG_KEY_1": "core.fsmonitor",
    "GIT_CONFIG_VALUE_1": "false",
    "GIT_CONFIG_KEY_2": "protocol.ext.allow",
    "GIT_CONFIG_VALUE_2": "never",
}
# the whole config of a cache clone, rewritten before every use: remotes are
# given by URL on the command line, never stored
_REPO_CONFIG = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n"


class SourceCache:
    def __init__(self, repos_dir: Path, *, allow_local: bool = False) -> None:
        self._dir = repos_dir
        self._allow_local = allow_local

    def _repo(self, app: str) -> git.Repo:
        path = self._dir / f"{check_app_name(app, where='a fetch')}.git"
        if not path.is_dir():
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # no template: no sample hooks or other files (an empty value of our own, hence "unsafe" allowed)
            git.Repo.init(path, bare=True, template="", allow_unsafe_options=True)
        _write_config(path / "config")
        repo = git.Repo(path)
        # local paths and file:// are the "file" protocol to git
        repo.git.update_environment(**{**_GIT_ENV, **_file_protocol(allowed=self._allow_local)})
        return repo

    def fetch(
        self, *, app: str, url: str, ref: str, commit: str, on_line: Callable[[str], None]
    ) -> CommitInfo:
        """Fetch ``ref`` from ``url``; return ``commit`` (or the ref's head)."""
        branch = ref.removeprefix("refs/heads/")
        try:
            if check_repo_url(url) != url or check_branch(branch) != branch:
                raise ValueError("is not in its checked form")
        except ValueError as exc:
            raise SourceError(f"refusing to fetch {ref!r} from {shown_url(url)!r}: {exc}") from None
        if commit and not COMMIT_ID.fullmatch(commit):
            raise SourceError(f"refusing to fetch {commit!r}: not a commit id")
        if is_local_repo(url) and not self._allow_local:
            raise SourceError(
                f"refusing to fetch {url!r}: a repository on this server needs PAAS_ALLOW_LOCAL_REPOS=true"
            )
        repo = self._repo(app)
        ref, local = f"refs/heads/{branch}", f"refs/remotes/origin/{branch}"
        on_line(f"git fetch {shown_url(url)} {ref}")
        try:
            repo.git.fetch(
                "--no-tags",
                "--force",
                "--end-of-options",
                url,
                f"+{ref}:{local}",
                kill_after_timeout=GIT_TIMEOUT,
            )
        except GitCommandError as exc:
            raise _failed(f"cannot fetch {ref} from {shown_url(url)}: {_stderr(exc)}", exc) from exc
        target = commit or local
        try:
            obj = repo.commit(target)
        except (ValueError, GitCommandError, git.BadName):
            obj = self._fetch_commit(repo, url, commit)
        on_line(f"commit {obj.hexsha} {obj.summary!s}")
        return CommitInfo(sha=obj.hexsha, message=str(obj.message).strip())

    def _fetch_commit(self, repo: git.Repo, url: str, commit: str) -> git.Commit:
        """The pushed commit is no longer on the ref (a later force push): ask
        for it by id, which most servers allow for reachable commits."""
        try:
            repo.git.fetch("--no-tags", "--end-of-options", url, commit, kill_after_timeout=GIT_TIMEOUT)
            return repo.commit(commit)
        except (ValueError, GitCommandError, git.BadName) as exc:
            raise _failed(
                f"commit {commit} is not on the remote", exc, otherwise=ErrorKind.not_found
            ) from exc

    def export(self, *, app: str, commit: str, dest: Path) -> None:
        """Write the commit's tree into ``dest`` (replaced if present)."""
        if not FULL_COMMIT.fullmatch(commit):
            raise SourceError(f"cannot export {commit!r}: not a full commit id")
        repo = self._repo(app)
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        with tempfile.TemporaryDirectory(prefix="paas-export-") as scratch:
            env = {"GIT_WORK_TREE": str(dest.resolve()), "GIT_INDEX_FILE": str(Path(scratch) / "index")}
            try:
                repo.git.read_tree("--reset", "-u", commit, env=env, kill_after_timeout=GIT_TIMEOUT)
            except GitCommandError as exc:
                raise _failed(f"cannot export {commit}: {_stderr(exc)}", exc) from exc
        _world_readable(dest)

    def forget(self, app: str) -> None:
        shutil.rmtree(self._dir / f"{check_app_name(app, where='a clean-up')}.git", ignore_errors=True)


def _file_protocol(*, allowed: bool) -> dict[str, str]:
    n = int(_GIT_ENV["GIT_CONFIG_COUNT"])
    return {
        "GIT_CONFIG_COUNT": str(n + 1),
        f"GIT_CONFIG_KEY_{n}": "protocol.file.allow",
        f"GIT_CONFIG_VALUE_{n}": "always" if allowed else "never",
    }


def _write_config(path: Path) -> None:
    """Replace the clone's config with ours (a rename: a planted symlink is
    replaced, never followed)."""
    atomic_write(path, _REPO_CONFIG, mode=0o600)


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


def _failed(message: str, exc: Exception, *, otherwise: ErrorKind = ErrorKind.other) -> SourceError:
    """git's failure, of kind ``disk_full`` when git's stderr says so."""
    said = _stderr(exc) if isinstance(exc, GitCommandError) else str(exc)
    return SourceError(message, kind=ErrorKind.disk_full if says_disk_full(said) else otherwise)


def _stderr(exc: GitCommandError) -> str:
    text = str(exc.stderr or exc).strip()
    return text.removeprefix("stderr:").strip().strip("'").strip()
