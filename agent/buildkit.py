"""Builds through BuildKit (issue 31), with ``PAAS_BUILDER=buildkit``.

paas runs Docker's own command line, ``docker build`` with
``DOCKER_BUILDKIT=1`` (``PAAS_DOCKER_CLI``: Debian 12's docker.io has the
BuildKit client built into ``/usr/bin/docker``; a newer CLI needs its buildx
plugin), against the engine's built-in BuildKit. The engine's session API,
which the CLI speaks, has no Python client worth the name.

- The Dockerfile is given on stdin (``-f -``) as paas checked and rewrote it
  (paas/dockerfile.py: each cache mount in the app's own namespace), so the
  build reads exactly the text that was checked, and the context is left as
  the commit has it.
- Build secrets (secret values of build or both scope) reach the CLI as
  files (``--secret id=KEY,src=FILE``, 0600 in a 0700 directory, removed when
  the build ends), so a build reads them only under ``/run/secrets`` of a
  ``RUN --mount=type=secret`` step: never in a layer, a build arg or the
  image's history. Each is mounted by an id of the app's own that changes
  with its value (``secret_ids``): BuildKit keys its shared cache by the id.
- Build args reach the CLI in its environment (``--build-arg NAME``), never in
  its arguments, which every user of the server can read in /proc. A build
  arg the CLI itself, its Go runtime or the dynamic loader would read
  (``LD_PRELOAD``, ``DOCKER_HOST`` ...) is refused.
- The release log gets BuildKit's plain progress, line by line. A cancel or
  the timeout sends the CLI SIGINT, which cancels the build in the engine,
  then SIGKILL 10 s later.
- Every ``RUN`` step runs in a cgroup of its own under the engine's
  ``/docker/buildkit`` (cgroupfs driver; BuildKit ignores ``--memory`` and
  ``--cgroup-parent``), so paas caps that parent before each build:
  ``PAAS_BUILD_MEMORY`` (no swap beyond it) and ``PAAS_BUILD_PIDS``, for
  all build steps running at once together. Under the systemd cgroup driver
  each step is a scope of its own in ``system.slice`` with no parent paas
  could cap, so paas refuses to build with BuildKit there, saying so.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets as secrets_module
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from agent.commands import stream
from agent.docker_engine import EngineError
from paas.dockerfile import cache_namespace
from paas.errors import ErrorKind, InvalidInput

__all__ = [
    "BuildKitBuild",
    "BuildKitError",
    "build",
    "build_args",
    "build_env",
    "cap_build_steps",
    "check_cgroup_parent",
    "check_engine",
    "masked",
    "secret_ids",
]

CGROUP_ROOT = Path("/sys/fs/cgroup")
BUILDKIT_CGROUP = "docker/buildkit"  # where the engine's BuildKit puts its steps (cgroupfs driver)

# What the CLI process reads from its environment besides build args: a build
# arg of one of these names would steer the CLI, not the build.
# (a newer CLI's buildx plugin reads more: a source policy file, git's own variables
# for the `git rev-parse` it runs in the context, tracing endpoints)
_CLI_READS = re.compile(
    r"(DOCKER_|BUILDKIT_|BUILDX_|EXPERIMENTAL_|GIT_|OTEL_|JAEGER_|SSH_|LD_|MALLOC_|GLIBC_|GCONV_|XDG_).*"
    r"|ZONEINFO"
    r"|GO(DEBUG|GC|MAXPROCS|TRACEBACK|MEMLIMIT)"
    r"|PATH|HOME|TMPDIR|TZ|TZDIR|LOCPATH|LOCALDOMAIN|NLSPATH|NIS_PATH|HOSTALIASES|RES_OPTIONS"
    r"|RESOLV_HOST_CONF|GETCONF_DIR|SSL_CERT_(FILE|DIR)|NO_COLOR|TERM|LANG|LC_.*",
    re.IGNORECASE,
)
_DIGEST_LINE = re.compile(r"#\d+ sha256:[0-9a-f]{64}")
# what the CLI is given of the agent's own environment (to find the same engine the SDK does)
_ENGINE_ENV = ("DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY")


class BuildKitError(EngineError):
    """A BuildKit build failed, was stopped, or could not be boxed."""


@dataclass(frozen=True)
class BuildKitBuild:
    """One build, as the CLI is asked for it."""

    cli: str
    context: Path
    dockerfile_text: str
    tag: str
    iidfile: Path
    labels: Mapping[str, str] = field(default_factory=dict)
    buildargs: Mapping[str, str] = field(default_factory=dict)
    network: str = ""
    target: str = ""
    # the app's build secrets: each reaches the build as a file the CLI reads
    # (`--secret id=KEY,src=...`), never an argument, a build arg or a layer
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)  # id -> value

    def secret_file(self, secret_id: str) -> Path:
        """Where the value of build secret ``secret_id`` is kept while the
        CLI runs: beside the image id file, in a directory only root reads."""
        return self.iidfile.parent / f"secret-{sorted(self.secrets).index(secret_id)}"


def build_args(b: BuildKitBuild) -> list[str]:
    """The CLI's arguments (pure): no build arg's value is among them."""
    args = [b.cli, "build", "--progress=plain", "--iidfile", str(b.iidfile), "--tag", b.tag, "--file", "-"]
    for key, value in sorted(b.labels.items()):
        args += ["--label", f"{key}={value}"]
    for name in sorted(b.buildargs):
        args += ["--build-arg", name]  # its value is read from the environment
    if b.network:
        args += ["--network", b.network]
    if b.target:
        args += ["--target", b.target]
    for secret_id in sorted(b.secrets):
        args += ["--secret", f"id={secret_id},src={b.secret_file(secret_id)}"]
    return [*args, str(b.context)]


ID_KEY_FILE = ".build-secret-key"  # in the builds directory: what each secret's id is keyed with


def secret_ids(builds_dir: Path, app: str, secrets: Mapping[str, str]) -> dict[str, str]:
    """Each build secret's id in ``app``'s builds: ``paas/<app>/<NAME>-<mac>``,
    the mac keyed with a key only the agent reads and taken over the value.

    BuildKit keys a step's cache by its secret mount's id, never by the
    value, and shares its cache across every build on the engine: with an
    id of the app's own that changes with the value, no other app's build
    (which cannot make the id) and no build after a change takes a layer
    built with it. The key is made on first use; a new one (a wiped builds
    directory) only costs one build without those layers."""
    if not secrets:
        return {}
    key = _secret_key(builds_dir)
    ids = {}
    for name, value in secrets.items():
        mac = hmac.new(key, f"{app}\0{name}\0{value}".encode(), hashlib.sha256).hexdigest()[:24]
        ids[name] = f"{cache_namespace(app)}{name}-{mac}"
    return ids


def _secret_key(builds_dir: Path) -> bytes:
    path = builds_dir / ID_KEY_FILE
    if not path.exists():
        builds_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, fresh = tempfile.mkstemp(dir=builds_dir, prefix=".key-")  # 0600, a name of its own
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets_module.token_bytes(32))
            with contextlib.suppress(FileExistsError):  # another build made it first: that one holds
                os.link(fresh, path)
        finally:
            os.unlink(fresh)
    key = path.read_bytes()
    if len(key) != 32:
        raise BuildKitError(
            f"{path} is not a key paas made (32 bytes): remove it, and the next build makes one"
        )
    return key


def masked(line: str, values: Iterable[str]) -> str:
    """``line`` with each secret value (as written, or URL-quoted, and each
    line of one of several lines) as ****: a tool in the build may print one
    (pip names its index in errors). Longest first, so that no part of one
    value is left beside another's mask; a value or line under 4 characters
    is left as it is (it could not be told apart from the rest of the log)."""
    forms = set()
    for value in values:
        for part in {piece.strip() for piece in (value, *value.splitlines())}:
            if len(part) >= 4:
                forms.update({part, quote(part, safe=""), quote(part)})
    for form in sorted(forms, key=len, reverse=True):
        line = line.replace(form, "****")
    return line


def _write_secrets(b: BuildKitBuild) -> None:
    for name, value in b.secrets.items():
        fd = os.open(b.secret_file(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value)


def _forget_secrets(b: BuildKitBuild) -> None:
    for name in b.secrets:
        with contextlib.suppress(FileNotFoundError):
            b.secret_file(name).unlink()


def build_env(b: BuildKitBuild, agent_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The CLI's whole environment: BuildKit on, the agent's way to the
    engine, and the build args. Raises InvalidInput for a build arg the CLI
    itself would read."""
    agent_env = os.environ if agent_env is None else agent_env
    for name in b.buildargs:
        if _CLI_READS.fullmatch(name):
            raise InvalidInput(
                f"the build arg {name} is read by the docker command line that builds, not only by "
                "the Dockerfile: rename it"
            )
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": agent_env.get("HOME", "/root"),
        "DOCKER_BUILDKIT": "1",
        # buildx (a newer CLI) would run git in the context and label the image with what it says
        "BUILDX_GIT_INFO": "0",
        "BUILDX_GIT_LABELS": "0",
    }
    env.update({k: agent_env[k] for k in _ENGINE_ENV if agent_env.get(k)})
    env.update(b.buildargs)
    return env


def cap_build_steps(memory: int, pids: int, *, root: Path = CGROUP_ROOT) -> str:
    """Cap what BuildKit's steps may use together, before a build: memory
    (bytes, no swap beyond it) and processes. Returns the cgroup capped.
    Works with cgroup v2 (unified) and v1 (one tree per controller)."""
    try:
        if (root / "cgroup.controllers").is_file():
            return _cap_v2(root, memory, pids)
        return _cap_v1(root, memory, pids)
    except OSError as exc:
        raise BuildKitError(f"could not cap BuildKit's build steps under {root}: {exc}") from exc


DAEMON_JSON = Path("/etc/docker/daemon.json")


def check_engine(driver: str, config: Path = DAEMON_JSON) -> None:
    """Whether paas can cap BuildKit's steps on this engine (its cgroup
    ``driver`` and configuration): BuildKitError saying why not, and the fix.
    The build refuses on it; ``paas doctor`` says it."""
    if driver != "cgroupfs":
        raise BuildKitError(
            f"the engine uses the {driver or 'unknown'} cgroup driver: BuildKit's build steps could not "
            "be capped (set dockerd's native.cgroupdriver=cgroupfs, or PAAS_BUILDER=classic)"
        )
    check_cgroup_parent(config)


def check_cgroup_parent(config: Path = DAEMON_JSON) -> None:
    """BuildKit's steps go under ``<dockerd's cgroup-parent>/buildkit``: with
    a cgroup-parent of the operator's own, capping ``docker/buildkit`` would
    cap nothing. Refused rather than built without limits."""
    try:
        said = json.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        raise BuildKitError(f"cannot read {config}: {exc}") from exc
    if isinstance(said, dict) and said.get("cgroup-parent"):
        raise BuildKitError(
            f"{config} sets cgroup-parent: BuildKit's build steps would run outside the cgroup paas caps "
            "(remove it, or PAAS_BUILDER=classic)"
        )


def unlimited_memory() -> int:
    """No memory cap given: the machine's memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _cap_v2(root: Path, memory: int, pids: int) -> str:
    box = root / BUILDKIT_CGROUP
    parent = box.parent
    for where in (root, parent):  # each level hands the controllers down
        where.mkdir(exist_ok=True)
        enabled = (where / "cgroup.subtree_control").read_text().split()
        wanted = [f"+{c}" for c in ("memory", "pids") if c not in enabled]
        if wanted:
            (where / "cgroup.subtree_control").write_text(" ".join(wanted))
    box.mkdir(exist_ok=True)
    (box / "memory.max").write_text(str(memory))
    with contextlib.suppress(FileNotFoundError):  # a kernel without swap accounting
        (box / "memory.swap.max").write_text("0")
    (box / "pids.max").write_text(str(pids))
    return str(box)


def _cap_v1(root: Path, memory: int, pids: int) -> str:
    mem, pid = root / "memory" / BUILDKIT_CGROUP, root / "pids" / BUILDKIT_CGROUP
    mem.mkdir(parents=True, exist_ok=True)
    pid.mkdir(parents=True, exist_ok=True)
    swap = mem / "memory.memsw.limit_in_bytes"
    # memory + swap may never be below memory: lower memory first, raise memory + swap first
    order = [mem / "memory.limit_in_bytes", swap]
    if swap.exists() and int(swap.read_text()) < memory:
        order.reverse()
    for knob in order:
        if knob.exists():
            knob.write_text(str(memory))
    (pid / "pids.max").write_text(str(pids))
    return f"{mem} and {pid}"


def build(
    b: BuildKitBuild, *, on_line: Callable[[str], None], should_stop: Callable[[], bool], timeout: int
) -> str:
    """Build; the image id. Raises BuildKitError with the build's last words."""
    env = build_env(b)

    def said(line: str) -> None:
        if not _DIGEST_LINE.fullmatch(line):  # each step's id: noise in a release log
            on_line(masked(line, b.secrets.values()) if b.secrets else line)

    try:
        _write_secrets(b)
    except OSError as exc:
        _forget_secrets(b)
        raise BuildKitError(f"could not hand the build its secrets: {exc.strerror}") from None
    try:
        ran = stream(
            build_args(b),
            environ=env,
            input=b.dockerfile_text,
            on_line=said,
            should_stop=should_stop,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise BuildKitError(f"{b.cli} is not there (PAAS_DOCKER_CLI): install docker.io") from None
    finally:
        _forget_secrets(b)
    if ran.stopped == "cancelled":
        raise BuildKitError("build cancelled", kind=ErrorKind.cancelled)
    if ran.stopped:
        raise BuildKitError(f"build {ran.stopped}", kind=ErrorKind.timeout)
    if ran.returncode != 0:
        raise BuildKitError(_why(ran.tail, ran.returncode))
    try:
        return b.iidfile.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise BuildKitError(f"the build wrote no image id: {exc}") from exc


def _why(tail: tuple[str, ...], code: int) -> str:
    """BuildKit's own summary of a failed build: its last ``ERROR`` or
    ``error:`` line, else the last line printed."""
    for line in reversed(tail):
        said = re.sub(r"^#\d+ ", "", line)
        if said.startswith(("ERROR", "error:", "failed to solve", "executor failed")):
            return said.removeprefix("ERROR: ").strip()
    return tail[-1] if tail else f"docker build exited with status {code}"


def scratch_iidfile(where: Path | None = None) -> Path:
    """A path for the CLI to write the image id to, in a directory of its
    own (0700) in ``where``: the builds directory, which the agent empties
    when it starts and when idle, so that no secret file outlives a crash."""
    if where is not None:
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="paas-build-", dir=where)) / "iid"
