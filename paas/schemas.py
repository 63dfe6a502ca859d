"""Request and response shapes shared by the API and the CLI.

Validation lives here so that every door (API, CLI, UI) refuses the same bad
input with the same message, naming the field.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from paas.models import EnvScope
from paas.settings import check_memory_size

__all__ = [
    "AppCreate",
    "AppCreated",
    "AppPublic",
    "AppUpdate",
    "DeployRequest",
    "DeploymentPublic",
    "EnvChange",
    "EnvChangeResult",
    "EnvImport",
    "EnvSet",
    "EnvVarPublic",
    "JobPublic",
    "ProcessPublic",
    "RollbackRequest",
    "RollbackResult",
    "BuildPlanPublic",
    "DatabaseAttach",
    "DatabaseCreate",
    "DatabaseDetach",
    "DatabaseExpose",
    "DatabasePublic",
    "DatabaseUpgrade",
    "DomainAdd",
    "DomainPublic",
    "normalize_hostname",
    "ScaleRequest",
    "ScaleResult",
    "TokenPublic",
]

MAX_ROW_ID = 2**63 - 1  # ids and versions are 64-bit signed in every database we support
COMMIT_ID = re.compile(r"^[0-9a-f]{7,40}$")  # full or abbreviated; fullmatch (also a pydantic pattern)
FULL_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256, as git names a commit
APP_NAME = re.compile(r"[a-z][a-z0-9-]{0,29}")
_BRANCH = re.compile(r"[A-Za-z0-9._/-]{1,255}")
_SCP_LIKE = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+")  # git@github.com:o/r.git


def check_app_name(value: str) -> str:
    if not APP_NAME.fullmatch(value) or value.endswith("-") or "--" in value:
        raise ValueError(
            "must be 1-30 characters of a-z, 0-9 and single hyphens, starting with a "
            "letter and not ending with a hyphen (it becomes a DNS label)"
        )
    return value


def check_repo_url(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("is required")
    if value.startswith("-") or any(ch in value for ch in "\n\r\t\0 "):
        raise ValueError("is not a git URL")
    if value.startswith(("https://", "http://", "ssh://", "git://", "file://")):
        scheme, rest = value.split("://", 1)
        userinfo, at, _host = rest.split("/", 1)[0].rpartition("@")
        # a token passes as a user name (https://TOKEN@github.com/...): only ssh names a user
        if at and (scheme != "ssh" or ":" in userinfo):
            raise ValueError(
                "must not carry a user name, password or token (it would be stored and shown); "
                "use an ssh URL with a deploy key for private repositories"
            )
        return value
    if _SCP_LIKE.fullmatch(value) or value.startswith("/"):
        return value
    raise ValueError("must be an https://, ssh:// or git@host:path URL, or an absolute local path")


def is_local_repo(url: str) -> bool:
    """A path or file:// URL on this server (root would read any repository there)."""
    return url.startswith(("/", "file://"))


def shown_url(url: str) -> str:
    """A git URL fit for logs, events and errors: the userinfo of a
    scheme URL (a token or user:password) is dropped, except ssh's plain
    ``git@``."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not sep or not at or userinfo == "git":
        return url
    return f"{scheme}://{host}{slash}{path}"


def check_branch(value: str) -> str:
    value = value.strip()
    if (
        not _BRANCH.fullmatch(value)
        or value.startswith(("-", "/", "."))
        or value.endswith(("/", ".", ".lock"))
        or ".." in value
        or "//" in value
    ):
        raise ValueError("is not a valid git branch name")
    return value


def check_relative_path(value: str) -> str:
    value = value.strip()
    if value in ("", ".", "./"):
        return ""
    path = PurePosixPath(value.rstrip("/"))
    if path.is_absolute() or ".." in path.parts or "\0" in value:
        raise ValueError("must be a relative path inside the repository, without '..'")
    return str(path)


def check_dockerfile(value: str) -> str:
    checked = check_relative_path(value)
    if not checked:
        raise ValueError("is required")
    return checked


def check_health_path(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not value.startswith("/") or any(ch.isspace() for ch in value):
        raise ValueError("must be a URL path starting with '/'")
    return value


def check_data_path(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts or str(path) == "/":
        raise ValueError("must be an absolute path inside the container, such as /data")
    return str(path)


_IMAGE = re.compile(r"[a-z0-9][a-z0-9._/-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?")


def check_run_command(value: str) -> str:
    value = value.strip()
    if "\0" in value or "\n" in value or "\r" in value:
        raise ValueError("must be one line (it runs as `sh -c COMMAND` in the container)")
    return value


def check_base_image(value: str) -> str:
    value = value.strip()
    if value and not _IMAGE.fullmatch(value):
        raise ValueError("must be an image reference such as python:3.12-slim")
    return value


def check_memory(value: str) -> str:
    return check_memory_size(value) if value.strip() else ""


AppName = Annotated[str, AfterValidator(check_app_name)]
Memory = Annotated[
    str,
    Field(max_length=20, description="Memory per container, e.g. 256m; empty: the server's PAAS_APP_MEMORY"),
    AfterValidator(check_memory),
]
Cpus = Annotated[float, Field(gt=0, le=256, description="CPUs per container; null: PAAS_APP_CPUS")]
Pids = Annotated[int, Field(ge=16, le=1_000_000, description="Processes per container; null: PAAS_APP_PIDS")]
RunCommand = Annotated[str, Field(max_length=2000), AfterValidator(check_run_command)]
# a Dockerfile stage (`FROM ... AS name`), as BuildKit names them; empty: the last stage
BuildTarget = Annotated[str, Field(max_length=64, pattern=r"^([A-Za-z][A-Za-z0-9_.-]*)?$")]
BaseImage = Annotated[str, Field(max_length=300), AfterValidator(check_base_image)]
RepoUrl = Annotated[str, AfterValidator(check_repo_url)]
Branch = Annotated[str, AfterValidator(check_branch)]
SourceDir = Annotated[str, AfterValidator(check_relative_path)]
DockerfilePath = Annotated[str, AfterValidator(check_dockerfile)]
HealthPath = Annotated[str | None, AfterValidator(check_health_path)]
DataPath = Annotated[str | None, AfterValidator(check_data_path)]
ContainerPort = Annotated[int, Field(ge=1, le=65535)]
Interval = Annotated[float, Field(gt=0, le=60)]
Timeout = Annotated[float, Field(gt=0, le=120)]
Retries = Annotated[int, Field(ge=1, le=1000)]


class AppCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: AppName
    repo_url: RepoUrl
    branch: Branch = "main"
    source_dir: SourceDir = ""
    dockerfile: DockerfilePath = "Dockerfile"
    port: ContainerPort | None = None
    health_path: HealthPath = None
    health_interval: Interval = 1.0
    health_timeout: Timeout = 5.0
    health_retries: Retries = 60
    data_path: DataPath = None
    run_command: RunCommand = ""
    release_command: RunCommand = ""
    build_target: BuildTarget = ""
    base_image: BaseImage = ""
    hsts: bool = False
    memory: Memory = ""
    cpus: Cpus | None = None
    pids: Pids | None = None


class AppUpdate(BaseModel):
    """Change an app's settings; omitted fields stay as they are. An empty
    health_path or data_path switches that feature off."""

    model_config = ConfigDict(extra="forbid")

    repo_url: RepoUrl | None = None
    branch: Branch | None = None
    source_dir: SourceDir | None = None
    dockerfile: DockerfilePath | None = None
    port: ContainerPort | None = None
    health_path: HealthPath = None
    health_interval: Interval | None = None
    health_timeout: Timeout | None = None
    health_retries: Retries | None = None
    data_path: DataPath = None
    run_command: RunCommand | None = None
    release_command: RunCommand | None = None
    build_target: BuildTarget | None = None  # "" builds the last stage
    base_image: BaseImage | None = None
    hsts: bool | None = Field(default=None, description="Send Strict-Transport-Security on HTTPS (opt-in)")
    memory: Memory | None = None  # "" clears it
    cpus: Cpus | None = None  # null clears it
    pids: Pids | None = None  # null clears it

    @field_validator(
        "hsts",
        "run_command",
        "release_command",
        "build_target",
        "base_image",
        "memory",
        "repo_url",
        "branch",
        "source_dir",
        "dockerfile",
        "health_interval",
        "health_timeout",
        "health_retries",
        mode="before",
    )
    @classmethod
    def _not_null(cls, value: object) -> object:
        """Omit a field to keep it; only port, health_path, data_path, cpus and pids can be nulled."""
        if value is None:
            raise ValueError("cannot be null (omit it to keep the current value)")
        return value


class AppPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    repo_url: str
    branch: str
    source_dir: str
    dockerfile: str
    port: int | None
    health_path: str | None
    data_path: str | None
    run_command: str
    release_command: str = ""
    build_target: str = ""
    base_image: str
    scale: dict[str, int]
    hsts: bool
    memory: str = ""
    cpus: float | None = None
    pids: int | None = None
    state: str
    url: str = ""
    webhook_url: str = ""
    current_version: int | None = None
    current_commit: str | None = None
    env_staged: bool = False  # env changed since the live release; applies at the next deploy
    pinned: bool = False  # after a rollback: pushes are recorded, not deployed
    pending_pushes: int = 0
    pending_commit: str = ""
    created_at: datetime


class AppCreated(AppPublic):
    """The answer to app creation: the only time the webhook secret is shown."""

    webhook_secret: str


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ref: str | None = None
    commit: str | None = Field(
        default=None, pattern=COMMIT_ID.pattern, description="A commit id on the branch"
    )

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        return check_branch(value) if value else None


class DeploymentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    status: str
    commit: str
    commit_message: str
    ref: str
    trigger: str
    created_by: str
    step: str
    error: str
    image: str
    rollback_of: int | None = None
    image_pruned: bool = False
    job_id: int | None = None
    timings: dict[str, float]
    created_at: datetime
    finished_at: datetime | None
    duration: float | None = None


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    app_name: str
    state: str
    error: str
    cancel_requested: bool = False
    deployment_id: int | None
    superseded_by: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    version: int | None = None
    live: bool = Field(
        default=False, description="Its release is switched in and serving (retiring the old may go on)"
    )


class ProcessPublic(BaseModel):
    """One container of an app, as the agent sees it."""

    name: str
    process: str  # web, release, ...
    version: int
    live: bool  # belongs to the live release
    state: str  # running, exited, restarting, ...
    started_at: str
    uptime_seconds: float | None
    restarts: int
    oom_killed: bool = Field(
        default=False, description="The kernel killed it at its memory limit (PAAS_APP_MEMORY)"
    )
    processes: int | None = Field(default=None, description="Processes running in it")
    process_limit: int | None = Field(default=None, description="Its PID limit (PAAS_APP_PIDS)")
    # the box first (killed: out of memory; limited: at its process limit), then the image's
    # HEALTHCHECK status, else serving / stopped
    health: str


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: int | None = Field(
        default=None, ge=1, le=MAX_ROW_ID, description="The version to bring back; default: the previous one"
    )
    run_release: bool = Field(default=False, description="Run the release command (e.g. migrations) again")


class RollbackResult(BaseModel):
    job: JobPublic
    target_version: int
    warnings: list[str]


# env vars -------------------------------------------------------------------------

ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_KEY_CHARS = 255
MAX_VALUE_BYTES = 32 * 1024
MAX_VARS = 500
MAX_DOTENV_BYTES = 1024 * 1024
RESERVED_KEYS = frozenset({"PORT"})
RESERVED_PREFIX = "PAAS_"


def check_env_key(value: str) -> str:
    """Names are shown back in errors; values never are."""
    if len(value) > MAX_KEY_CHARS:
        raise ValueError(f"env var names are at most {MAX_KEY_CHARS} characters")
    if not ENV_KEY.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid env var name: use letters, digits and _, not starting with a digit"
        )
    if value in RESERVED_KEYS:
        raise ValueError(f"{value} is reserved: paas sets it to the port your app must listen on")
    if value.startswith(RESERVED_PREFIX):
        raise ValueError(f"{value} is reserved: names starting with {RESERVED_PREFIX} belong to paas")
    return value


def env_value_problem(key: str, value: str) -> str | None:
    """Why ``value`` cannot be stored for ``key``, without quoting the value."""
    size = len(value.encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        return f"the value of {key} is {size} bytes; the limit is {MAX_VALUE_BYTES}"
    if "\x00" in value:
        return f"the value of {key} contains a NUL character, which an environment cannot hold"
    return None


EnvKey = Annotated[str, AfterValidator(check_env_key)]


class EnvSet(BaseModel):
    """Set one variable. ``secret``/``scope`` left out keep what the variable
    has (a new one is general, run scope); a secret stays secret unless
    ``secret: false`` is given with its new value."""

    model_config = ConfigDict(extra="forbid")

    key: EnvKey
    value: str
    secret: bool | None = None
    scope: EnvScope | None = None

    @model_validator(mode="after")
    def _value(self) -> EnvSet:
        problem = env_value_problem(self.key, self.value)
        if problem:
            raise ValueError(problem)
        return self


class EnvChange(BaseModel):
    """One change to an app's env: any number of sets and unsets, applied
    together as a single new release (or staged, with ``restart: false``)."""

    model_config = ConfigDict(extra="forbid")

    set: list[EnvSet] = Field(default_factory=list, max_length=MAX_VARS)
    unset: list[EnvKey] = Field(default_factory=list, max_length=MAX_VARS)
    restart: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> EnvChange:
        if not self.set and not self.unset:
            raise ValueError("nothing to change: give at least one variable to set or unset")
        keys = [s.key for s in self.set] + list(self.unset)
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} given more than once")
        return self


class EnvImport(BaseModel):
    """A .env file's text, applied as one change."""

    model_config = ConfigDict(extra="forbid")

    dotenv: str = Field(max_length=MAX_DOTENV_BYTES)
    secret: bool | None = None
    scope: EnvScope | None = None
    restart: bool = True


class EnvVarPublic(BaseModel):
    key: str
    value: str | None  # None for a secret: write-only
    secret: bool
    scope: str
    updated_at: datetime
    updated_by: str


class EnvChangeResult(BaseModel):
    app: str
    changed: list[str]
    removed: list[str]
    staged: bool  # true: saved, applies at the next deploy (or nothing was live yet)
    job: JobPublic | None
    warnings: list[str]
    env: list[EnvVarPublic]


PROCESS_TYPE = r"^[a-z][a-z0-9_-]{0,29}$"
ProcessType = Annotated[str, Field(pattern=PROCESS_TYPE)]


class ScaleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    processes: dict[ProcessType, Annotated[int, Field(ge=0, le=100)]] = Field(
        description='Containers per process type, e.g. {"web": 2, "worker": 1}; types not named keep theirs'
    )


class ScaleResult(BaseModel):
    formation: dict[str, int] = Field(
        description="Containers per process type of the live release, as now set"
    )
    job: JobPublic | None = Field(description="The release that rolls them out; null before the first deploy")


class BuildPlanPublic(BaseModel):
    commit: str
    generated: bool = Field(description="True when the repository has no Dockerfile and paas writes one")
    summary: str
    notes: list[str]
    dockerfile: str
    procfile: dict[str, str]


_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def normalize_hostname(value: str) -> str:
    """A DNS hostname in its ASCII (IDNA) form, lower case, no trailing dot;
    no wildcards, no IP addresses, at least two labels."""
    import ipaddress

    import idna

    value = value.strip().rstrip(".")
    if not value:
        raise ValueError("is required")
    if "*" in value:
        raise ValueError("wildcards are not supported; add each hostname")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        raise ValueError("must be a hostname, not an IP address")
    try:
        ascii_name = idna.encode(value, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"is not a valid hostname ({exc})") from None
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError("is not a valid hostname such as www.example.com")
    if labels[-1].isdigit():
        raise ValueError("is not a valid hostname: the last label cannot be numeric")
    return ascii_name


class DomainAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hostname: Annotated[str, Field(max_length=300), AfterValidator(normalize_hostname)] = Field(
        description="A hostname such as www.example.com (Unicode names are stored in IDNA form)"
    )


class DomainPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    hostname: str
    app: str = Field(default="", description="The app it serves; empty for the control plane")
    is_default: bool
    cert_state: str = Field(
        description="pending, issued, dns_mismatch, unreachable, failed or disabled; see cert_error"
    )
    cert_expires_at: datetime | None
    cert_error: str
    next_attempt_at: datetime | None
    https: bool = Field(default=False, description="nginx serves it over HTTPS (and redirects HTTP)")
    expiring: bool = Field(default=False, description="within the renewal window and not yet renewed")


class TokenPublic(BaseModel):
    """An API token as listed: never the token itself."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    prefix: str = Field(description="The token's first characters, to recognise it")
    created_at: datetime
    last_used_at: datetime | None = Field(description="Coarse: updated at most once a minute")
    expires_at: datetime | None = Field(description="null: until revoked")


# GitHub reporting and notifications (paas/notify_rules.py) --------------------------------


class GitHubUpdate(BaseModel):
    """Change how an app reports to GitHub; omitted fields stay. The token is
    write-only: "" removes it."""

    model_config = ConfigDict(extra="forbid")

    token: str | None = Field(
        default=None,
        max_length=500,
        description="Fine-grained, with Commit statuses and Deployments (read and write); '' removes it",
    )
    repo: str | None = Field(default=None, description="owner/name; '' takes it from the app's repo URL")
    environment: str | None = Field(default=None, description="The GitHub environment (default production)")

    @field_validator("token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if value and not re.fullmatch(r"[A-Za-z0-9_.\-]{20,500}", value):
            raise ValueError("is not a GitHub token (ghp_…, github_pat_… or ghs_…)")
        return value

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str | None) -> str | None:
        from paas.notify_rules import check_github_repo

        return None if value is None else check_github_repo(value)

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: str | None) -> str | None:
        from paas.notify_rules import check_github_environment

        return None if value is None else check_github_environment(value)


class GitHubPublic(BaseModel):
    token_set: bool = Field(description="Whether a token is stored (it is never shown)")
    repo: str = Field(description="owner/name statuses go to; '' if none can be found")
    repo_set: str = Field(description="The repository as set ('' = from the repo URL)")
    environment: str
    last_outcome: str = Field(default="", description="How the last report to GitHub went")
    last_at: datetime | None = None


class NotifyTargetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="An Apprise URL (slack://…, discord://…, mailtos://…, ntfys://…, json://…)")
    app: str | None = Field(default=None, description="Only this app's events; omitted: every app's")
    events: list[str] = Field(default_factory=list, description="Which events; empty: all of them")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from paas.notify_rules import check_notify_url

        return check_notify_url(value)

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        from paas.notify_rules import check_events

        return check_events(value)


class NotifyTargetPublic(BaseModel):
    """A notification target as listed: never its URL, which embeds tokens."""

    id: int
    app: str | None = Field(description="null: every app")
    url: str = Field(description="Masked: the scheme and the last characters")
    events: list[str]
    created_at: datetime
    last_sent_at: datetime | None
    last_error: str = Field(description="Why the last notification or test did not reach it ('' = fine)")
    last_error_at: datetime | None
    waiting: int = Field(description="Notifications waiting to be sent or retried")


class NotifyTestResult(BaseModel):
    ok: bool
    error: str = ""


# databases -------------------------------------------------------------------------------

DATABASE_ENGINES = ("postgres", "redis")


def check_database_version(value: str) -> str:
    from paas.settings import DATABASE_VERSION

    if not DATABASE_VERSION.fullmatch(value):
        raise ValueError("must be a version such as 17 or 17.2 (an exact version; never latest)")
    return value


DatabaseVersion = Annotated[str, Field(max_length=40), AfterValidator(check_database_version)]


class DatabaseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: AppName = Field(description="Also how env values bind it: ${NAME.DATABASE_URL}")
    engine: Literal["postgres", "redis"]
    version: DatabaseVersion | None = Field(
        default=None, description="The image tag's version; null: PAAS_POSTGRES_VERSION or PAAS_REDIS_VERSION"
    )
    memory: Memory = ""


class DatabaseExpose(BaseModel):
    """Publish the database on 127.0.0.1:``port`` (for an SSH tunnel), or
    stop publishing it (``port`` null). Never on another address."""

    model_config = ConfigDict(extra="forbid")

    port: Annotated[int, Field(ge=1024, le=65535)] | None


class DatabaseUpgrade(BaseModel):
    """A minor version in place; a major one by dump, restore and a check of
    every table's row count into a new instance, the old kept stopped."""

    model_config = ConfigDict(extra="forbid")

    version: DatabaseVersion


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


class DatabaseAttach(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app: AppName
    key: EnvKey | None = Field(
        default=None,
        description="The env var that gets the URL; null: DATABASE_URL (postgres), REDIS_URL (redis)",
    )
    restart: bool = True


class DatabaseDetach(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app: AppName
    restart: bool = True


class AttachmentPublic(BaseModel):
    app: str
    keys: list[str] = Field(description="The app's env vars that bind this database")


class DatabasePublic(BaseModel):
    name: str
    engine: str
    version: str
    image: str
    image_digest: str
    server_version: str
    state: str = Field(description="creating, ready, failed, upgrading, retired or destroying; see error")
    error: str
    hostname: str = Field(description="Its name on its private network (attached apps only)")
    port: int
    username: str
    database: str
    memory: str
    exposed_port: int | None = Field(description="Published on 127.0.0.1 only, for an SSH tunnel")
    attached: list[AttachmentPublic]
    bindable: list[str] = Field(description="The references an env value may use, e.g. ${db.DATABASE_URL}")
    upgraded_from: str
    last_backup_at: datetime | None
    last_backup_error: str
    created_at: datetime
    created_by: str
    job: JobPublic | None = Field(default=None, description="The job just queued for it, if any")
    stats: dict[str, int] | None = Field(
        default=None,
        description="size (bytes: on disk, PostgreSQL; in memory, Redis), connections, max_connections; "
        "null when not asked or the agent does not answer",
    )
