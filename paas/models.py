"""Database models: the intent and history side of paas.

Docker holds what runs; these rows hold what should run and what happened.
Times are aware UTC datetimes (``utcnow()``); sqlmodel stores them as UTC on
SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from paas.scopes import EnvScope

__all__ = [
    "ApiToken",
    "App",
    "Database",
    "DatabaseState",
    "Deployment",
    "DeploymentStatus",
    "EnvScope",
    "EnvVar",
    "Event",
    "Job",
    "JobState",
    "Notice",
    "NotifyTarget",
    "WebhookDelivery",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class App(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=40, unique=True, index=True)
    repo_url: str = Field(max_length=2000)
    branch: str = Field(default="main", max_length=255)
    source_dir: str = Field(default="", max_length=500)  # build context inside the repo
    dockerfile: str = Field(default="Dockerfile", max_length=500)  # relative to source_dir
    port: int | None = None  # the port the app listens on ($PORT); None: EXPOSE, else 8000
    health_path: str | None = Field(default=None, max_length=500)  # None: TCP connect
    health_interval: float = 1.0
    health_timeout: float = 5.0
    health_retries: int = 60
    data_path: str | None = Field(default=None, max_length=500)  # mount a persistent volume here
    run_command: str = Field(default="", max_length=2000)  # the web command; else Procfile web, else detected
    # the release command (sh -c) in the one-off container before a release starts; "": the
    # Procfile's release:, else a prestart.sh in the image (App Platform's pre-deploy job)
    release_command: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    # the Dockerfile stage to build (`docker build --target`); empty: the last one
    build_target: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    base_image: str = Field(default="", max_length=300)  # for builds without a Dockerfile; "": the default
    # containers per process type, kept across deploys; a type not named runs 1
    scale: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    hsts: bool = False  # Strict-Transport-Security on its HTTPS hostnames (opt-in: hard to undo)
    # what each of its containers may take; empty/None: PAAS_APP_MEMORY, PAAS_APP_CPUS, PAAS_APP_PIDS
    memory: str = Field(default="", max_length=20)
    cpus: float | None = None
    pids: int | None = None
    webhook_secret: str = Field(sa_column=Column(Text, nullable=False))  # encrypted (paas.crypto)
    env_version: int = 0  # bumped by every env change; a release records the one it ran with
    # after a rollback, pushes are recorded but not deployed until `paas unpin` or `paas deploy`
    pinned: bool = False
    pending_pushes: int = 0
    pending_commit: str = Field(default="", max_length=64)
    # the newest push accepted from GitHub (repository.pushed_at and its commit): an older or the
    # same one again is a replay or an out-of-order delivery, recorded and not deployed
    last_pushed_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    last_pushed_commit: str = Field(default="", max_length=64)
    state: str = Field(default="active", max_length=20)  # active | deleting
    # GitHub commit statuses and deployments (agent/tell/github.py): the token is sealed to the
    # agent's key pair like a secret env value ("" = not told); repo "owner/name", "" = from repo_url
    github_token: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    github_repo: str = Field(default="", max_length=200)
    github_environment: str = Field(default="production", max_length=100)
    current_deployment_id: int | None = None
    created_at: datetime = Field(default_factory=utcnow)


class DeploymentStatus(enum.StrEnum):
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class Deployment(SQLModel, table=True):
    """One build-and-release attempt: version vN of an app."""

    __table_args__ = (UniqueConstraint("app_id", "version", name="uq_deployment_app_version"),)

    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(foreign_key="app.id", index=True, ondelete="CASCADE")
    version: int
    commit: str = Field(default="", max_length=64)
    commit_message: str = Field(default="", max_length=2000)
    ref: str = Field(default="", max_length=255)
    trigger: str = Field(default="", max_length=100)  # push | manual | rollback | env | restart | scale ...
    created_by: str = Field(default="", max_length=200)
    status: str = Field(default=DeploymentStatus.running, max_length=20)
    step: str = Field(default="", max_length=20)  # the step running or that failed
    error: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    image: str = Field(default="", max_length=300)
    container_port: int | None = None
    host_port: int | None = None
    containers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # the web containers' host:port, all behind the app's nginx upstream
    upstreams: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    timings: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # the Procfile the image was built with, so a release of the same image needs no source
    procfile: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # the env this release runs with: [{key, scope, secret, value}] with values still encrypted
    env: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    env_version: int = 0
    rollback_of: int | None = None  # the version this release brought back
    image_pruned: bool = False  # retention removed the image: it cannot be rolled back to
    job_id: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class CertState(enum.StrEnum):
    pending = "pending"  # no certificate yet; the agent will check and request one
    issued = "issued"
    dns_mismatch = "dns_mismatch"  # the preflight found DNS pointing elsewhere: nothing requested
    unreachable = "unreachable"  # the preflight could not fetch its token over port 80
    failed = "failed"  # the CA refused; retried after a back-off
    disabled = "disabled"  # PAAS_ACME=off: HTTP only


class Domain(SQLModel, table=True):
    """A hostname nginx serves, and its certificate's state. An app's default
    hostname (<app>.<PAAS_DOMAIN>) has a row too, made by the agent; app_id
    None is the control plane's own hostname."""

    id: int | None = Field(default=None, primary_key=True)
    app_id: int | None = Field(default=None, foreign_key="app.id", index=True, ondelete="CASCADE")
    hostname: str = Field(max_length=253, unique=True, index=True)  # IDNA (punycode), lower case
    is_default: bool = False
    cert_state: str = Field(default=CertState.pending, max_length=20)
    cert_expires_at: datetime | None = None
    cert_error: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    attempts: int = 0  # failed CA requests in a row
    next_attempt_at: datetime | None = None
    checked_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class EnvVar(SQLModel, table=True):
    """One env var of an app. ``value`` is always a ciphertext (paas.crypto):
    Fernet for general values, sealed to the agent's key pair for secrets."""

    __table_args__ = (UniqueConstraint("app_id", "key", name="uq_envvar_app_key"),)

    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(foreign_key="app.id", index=True, ondelete="CASCADE")
    key: str = Field(max_length=255)
    value: str = Field(sa_column=Column(Text, nullable=False))
    secret: bool = False
    scope: str = Field(default=EnvScope.run, max_length=10)
    # the databases its value binds (``${NAME.PART}``), read from the value when it was set, so web
    # knows what is attached without opening a secret; the agent resolves the value itself
    databases: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: str = Field(default="", max_length=200)


class DatabaseState(enum.StrEnum):
    creating = "creating"  # the agent is making its container
    ready = "ready"  # running, healthy when last checked
    failed = "failed"  # creating it failed (``error`` says why); destroy removes what is left
    upgrading = "upgrading"
    retired = "retired"  # an upgrade's old instance, stopped, kept until destroyed
    destroying = "destroying"


class Database(SQLModel, table=True):
    """A database server beside the apps: a PostgreSQL or Redis container of
    an exact version on a network of its own, made and run by the agent.
    Its password is made by the agent and sealed to the agent's key pair
    (``db-password:<name>``): web never holds it."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=40, unique=True, index=True)
    engine: str = Field(max_length=20)  # postgres | redis
    version: str = Field(max_length=40)  # the image tag's version: "15", "17.2", "7.0"
    image: str = Field(max_length=300)  # the image reference it runs, e.g. postgres:15-bookworm
    image_digest: str = Field(default="", max_length=100)  # the image's id when it was started
    server_version: str = Field(default="", max_length=100)  # what the server itself reports
    state: str = Field(default=DatabaseState.creating, max_length=20)
    error: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    password: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))  # sealed
    username: str = Field(default="", max_length=63)
    database: str = Field(default="", max_length=63)  # postgres: the database made at init; redis: "0"
    memory: str = Field(default="", max_length=20)  # "": PAAS_DATABASE_MEMORY
    container: str = Field(default="", max_length=100)  # its container's name, also its hostname
    volume: str = Field(default="", max_length=100)
    network: str = Field(default="", max_length=100)
    exposed_port: int | None = None  # published on 127.0.0.1 only, for an SSH tunnel
    upgraded_from: str = Field(default="", max_length=40)  # the retired instance an upgrade left
    last_backup_at: datetime | None = None
    last_backup_error: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = Field(default="", max_length=200)


class JobState(enum.StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    superseded = "superseded"
    cancelled = "cancelled"


class Job(SQLModel, table=True):
    """The durable queue. At most one running job per app (a partial unique
    index says so to the database itself, so two claimers cannot both win)."""

    __table_args__ = (
        Index(
            "uq_job_one_running_per_app",
            "app_id",
            unique=True,
            sqlite_where=text("state = 'running'"),
            postgresql_where=text("state = 'running'"),
        ),
        Index("ix_job_state_created", "state", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=20)  # deploy | release | rollback | delete | database
    app_id: int | None = Field(default=None, foreign_key="app.id", ondelete="SET NULL")
    app_name: str = Field(max_length=40)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    state: str = Field(default=JobState.queued, max_length=20)
    attempts: int = 0
    lease_owner: str = Field(default="", max_length=100)
    lease_expires_at: datetime | None = None
    error: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    cancel_requested: bool = False
    deployment_id: int | None = None
    superseded_by: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None


class WebhookDelivery(SQLModel, table=True):
    """One accepted GitHub delivery, kept to drop redeliveries."""

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(max_length=100, unique=True, index=True)
    app_id: int | None = Field(default=None, foreign_key="app.id", ondelete="SET NULL")
    event: str = Field(max_length=50)
    outcome: str = Field(default="", max_length=300)
    job_id: int | None = None
    received_at: datetime = Field(default_factory=utcnow)


class User(SQLModel, table=True):
    """A person who signs in to the web UI (argon2id hash; no default user)."""

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True, index=True)
    password_hash: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    last_login_at: datetime | None = None
    # in every session cookie; a new password (or deletion) moves it on, ending those sessions
    session_version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})


class ApiToken(SQLModel, table=True):
    """A bearer token for the API and CLI, stored as its SHA-256 hash only."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    prefix: str = Field(max_length=16)  # shown in listings so a token can be recognised
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None  # coarse: written at most once a minute
    expires_at: datetime | None = None  # None: until revoked


class Event(SQLModel, table=True):
    """The audit trail: who did what to which app. Never a secret value."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=100)
    app_name: str = Field(default="", max_length=40, index=True)
    detail: str = Field(default="", max_length=2000)


class NotifyTarget(SQLModel, table=True):
    """Where notifications go: an Apprise URL, sealed to the agent's key pair
    (URLs embed tokens), for every app (app_id None) or one app."""

    id: int | None = Field(default=None, primary_key=True)
    app_id: int | None = Field(default=None, foreign_key="app.id", index=True, ondelete="CASCADE")
    url: str = Field(sa_column=Column(Text, nullable=False))  # sealed (paas.crypto)
    masked: str = Field(max_length=100)  # scheme and the last characters, for listings
    events: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # []: all
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = Field(default="", max_length=200)
    last_sent_at: datetime | None = None
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    last_error_at: datetime | None = None


class Notice(SQLModel, table=True):
    """The agent's outbox: one thing to tell GitHub or a notification target,
    sent off the deploy's path, in order per app and channel, retried with
    back-off. Written by the agent only (and re-checked by it before sending:
    paas/trust.py); web reads them for status and drops a removed target's."""

    __table_args__ = (Index("ix_notice_state_next", "state", "next_at"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=10)  # github | notify
    app_id: int | None = Field(default=None, foreign_key="app.id", index=True, ondelete="CASCADE")
    app_name: str = Field(default="", max_length=40)
    target_id: int | None = Field(default=None, foreign_key="notifytarget.id", ondelete="CASCADE")
    job_id: int | None = Field(default=None, index=True)
    deployment_id: int | None = None
    event: str = Field(max_length=30)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # what was done so far (GitHub: the calls made, the deployment id it created)
    progress: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    state: str = Field(default="pending", max_length=10)  # pending | sent | failed
    attempts: int = 0
    next_at: datetime = Field(default_factory=utcnow)
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None  # when the outbox was done with it: sent, or given up
