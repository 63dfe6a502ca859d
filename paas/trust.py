"""What the agent re-checks in every row it reads from the shared database.

The web process is internet-facing; assume it is taken over (ARCHITECTURE.md,
"Threat model"): it may then write any row. So before a value from the
database reaches argv, a path, a template or the Docker API, the agent runs
it through the same validators web uses (one definition each, in
:mod:`paas.schemas`). A value that the validator would change (a stray
space, a trailing newline) is as untrusted as one it refuses. A bad row fails
its job with :class:`UntrustedRow`, naming the table and field, and touches
nothing.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from paas import schemas
from paas.bindings import ENGINES, account_for, image_for, names_for
from paas.errors import InvalidInput
from paas.models import App, Database, Deployment, Job, Notice
from paas.notify_rules import EVENTS, check_github_environment, check_github_repo
from paas.payloads import BY_KIND, DeploymentOp, GitHubReport, JobPayload, NotifyMessage
from paas.schemas import (
    FULL_COMMIT,
    AppCreate,
    ScaleRequest,
    check_env_key,
    normalize_hostname,
)
from paas.settings import Settings

__all__ = [
    "UntrustedRow",
    "check_app",
    "check_app_name",
    "check_database",
    "check_github_app",
    "check_hostname",
    "check_job",
    "check_release",
    "check_version",
    "github_report",
    "job_payload",
    "notify_message",
]

_VERSION_TAG = re.compile(r"paas/(?P<app>[a-z][a-z0-9-]{0,29}):v(?P<version>[1-9][0-9]{0,18})")
_CONTAINER_TAIL = re.compile(r"[a-z][a-z0-9_-]{0,29}-v[1-9][0-9]{0,18}-[0-9]{1,3}")  # after paas-<app>-
_UPSTREAM = re.compile(r"(?P<host>[0-9.]{7,15}):(?P<port>[0-9]{1,5})")
MAX_COMMAND = 4000  # a Procfile line
_VARIANT = re.compile(r"[a-z][a-z0-9.-]{0,30}")  # PAAS_DATABASE_VARIANT's pattern


class UntrustedRow(InvalidInput):
    """A row read from the database fails the check web applies on input."""


def _refuse(where: str, field: str, why: str) -> UntrustedRow:
    return UntrustedRow(f"refusing {where}: its {field} {why} (the database was changed outside paas?)")


M = TypeVar("M", bound=BaseModel)


def _shown(value: object, most: int = 200) -> str:
    said = repr(value)
    return said if len(said) <= most else said[: most - 1] + "…"


def _through(model: type[M], data: dict[str, Any], *, where: str, field: str) -> M:
    """``data`` (the row's ``field``) as ``model``, validated strictly;
    refused, naming the first bad field, if it fails or would come out changed."""
    try:
        checked = model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        parts = list(first["loc"])
        # a list item's union tag (the "op" of a GitHub call) is no field
        loc = [
            p for i, p in enumerate(parts) if not (isinstance(p, str) and i and isinstance(parts[i - 1], int))
        ]
        kind = first["type"]
        if kind in ("extra_forbidden", "missing"):
            *loc, key = loc
            why = "has an unknown field" if kind == "extra_forbidden" else "lacks the field"
            raise _refuse(where, _path(field, loc), f"{why} {_shown(key)}") from None
        raise _refuse(where, _path(field, loc), f"{_shown(first['input'])} is not valid") from None
    if checked.model_dump(exclude_unset=True) != data:
        raise _refuse(where, field, "is not in its checked form")
    return checked


def _path(field: str, loc: list[str | int]) -> str:
    return field + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


def _same_through(model: type[BaseModel], data: dict[str, Any], *, where: str) -> None:
    """``data`` passes ``model``'s validators and comes out unchanged."""
    try:
        checked = model.model_validate(data).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(part) for part in first["loc"]]
        if "[key]" in loc:  # a bad mapping key: name the mapping, not the (untrusted) key
            raise _refuse(where, loc[0], "has a key that is not a process type name") from None
        field = ".".join(loc) or "value"
        raise _refuse(where, field, first["msg"].removeprefix("Value error, ")) from None
    for key, value in data.items():
        if checked.get(key) != value:
            raise _refuse(where, key, f"is not in its checked form ({value!r})")


def check_app_name(name: object, *, where: str = "an app") -> str:
    try:
        if isinstance(name, str) and schemas.check_app_name(name) == name:
            return name
    except ValueError:
        pass
    raise _refuse(where, "name", f"{name!r} is not an app name")


def check_app(app: App) -> App:
    """Every field of an app row that the agent uses, as web checked it on input."""
    where = f"app {app.name!r}"
    check_app_name(app.name, where=where)
    _same_through(AppCreate, {field: getattr(app, field) for field in AppCreate.model_fields}, where=where)
    _same_through(ScaleRequest, {"processes": app.scale}, where=where)
    return app


def check_database(db: Database, *, settings: Settings) -> Database:
    """A database row as web could have written it: its name, engine and
    version pass web's checks, and its image and the names of its
    container, volume and network are the ones those three make (so no row
    can point the agent at another image, or at an app's volume)."""
    where = f"database {_shown(db.name, 40)}"
    check_app_name(db.name, where=where)
    if db.engine not in ENGINES:
        raise _refuse(where, "engine", f"{_shown(db.engine)} is not one of {', '.join(ENGINES)}")
    try:
        if schemas.check_database_version(db.version) != db.version:
            raise ValueError
        if db.memory and schemas.check_memory(db.memory) != db.memory:
            raise ValueError
    except (ValueError, TypeError):
        raise _refuse(where, "version or memory", "is not what web accepts") from None
    # the repository this server names for the engine, or the official one (a database made
    # before PAAS_POSTGRES_IMAGE or PAAS_DATABASE_VARIANT changed keeps its image)
    repositories = {db.engine, settings.postgres_image if db.engine == "postgres" else settings.redis_image}
    repository, _colon, tag = db.image.partition(":")
    variant = tag.removeprefix(f"{db.version}-")
    if (
        repository not in repositories
        or not _VARIANT.fullmatch(variant)
        or db.image != image_for(repository, db.version, variant)
    ):
        raise _refuse(where, "image", f"{_shown(db.image)} is not the image of its engine and version")
    if (db.container, db.volume, db.network) != names_for(db.name, db.engine, db.version):
        raise _refuse(where, "container, volume or network", "is not the one its name makes")
    if (db.username, db.database) != account_for(db.name, db.engine):
        raise _refuse(where, "username or database", "is not the one its name makes")
    if db.upgraded_from:
        try:
            if schemas.check_database_version(db.upgraded_from) != db.upgraded_from:
                raise ValueError
        except (ValueError, TypeError):
            raise _refuse(where, "upgraded_from", "is not a version") from None
    port = db.exposed_port
    if port is not None and not (type(port) is int and 1024 <= port <= 65535):
        raise _refuse(where, "exposed_port", f"{_shown(port)} is not a port")
    return db


def check_hostname(hostname: object, *, where: str) -> str:
    try:
        if isinstance(hostname, str) and normalize_hostname(hostname) == hostname:
            return hostname
    except ValueError:
        pass
    raise _refuse(where, "hostname", f"{hostname!r} is not a hostname")


def job_payload(job: Job) -> JobPayload:
    """What ``job`` asks, as its kind's model (paas/payloads.py), once its
    kind, its app's name and its payload pass the checks web applies."""
    where = f"job {job.id}"
    model = BY_KIND.get(job.kind)
    if model is None:
        raise _refuse(where, "kind", f"{_shown(job.kind)} is not a job kind")
    check_app_name(job.app_name, where=where)
    if not isinstance(job.payload, dict):
        raise _refuse(where, "payload", "is not an object")
    for key in job.payload:
        if key not in model.model_fields and any(key in other.model_fields for other in BY_KIND.values()):
            raise _refuse(where, f"payload.{key}", f"is not a field of a {job.kind} job")
    return _through(model, job.payload, where=where, field="payload")


def check_job(job: Job) -> Job:
    job_payload(job)
    return job


def _upstream_ok(value: object) -> bool:
    match = _UPSTREAM.fullmatch(value) if isinstance(value, str) else None
    if match is None or not 1 <= int(match["port"]) <= 65535:
        return False
    try:
        return ipaddress.ip_address(match["host"]).is_loopback
    except ValueError:
        return False


def check_release(dep: Deployment, *, app: str) -> Deployment:
    """A release of ``app`` whose image, processes and addresses the agent
    reuses (a rollback, a restart, reconcile): they must be ``app``'s own."""
    where = f"release v{dep.version} of {app}"
    image = _VERSION_TAG.fullmatch(dep.image) if dep.image else None
    if dep.image and (image is None or image["app"] != app):
        raise _refuse(where, "image", f"{dep.image!r} is not one of {app}'s images")
    if dep.commit and not FULL_COMMIT.fullmatch(dep.commit):
        raise _refuse(where, "commit", f"{dep.commit!r} is not a commit id")
    if not isinstance(dep.procfile, dict):
        raise _refuse(where, "procfile", "is not an object")
    _same_through(ScaleRequest, {"processes": dict.fromkeys(dep.procfile, 1)}, where=where)
    for process, command in dep.procfile.items():
        if not isinstance(command, str) or "\0" in command or len(command) > MAX_COMMAND:
            raise _refuse(where, f"procfile.{process}", "is not a command line")
    for name in dep.containers:
        prefix = f"paas-{app}-"
        if not (
            isinstance(name, str)
            and name.startswith(prefix)
            and _CONTAINER_TAIL.fullmatch(name[len(prefix) :])
        ):
            raise _refuse(where, "containers", f"{name!r} is not one of {app}'s containers")
    if not all(_upstream_ok(u) for u in dep.upstreams):
        raise _refuse(where, "upstreams", f"{dep.upstreams!r} are not loopback host:port pairs")
    for port in (dep.host_port, dep.container_port):
        if port is not None and not (type(port) is int and 1 <= port <= 65535):
            raise _refuse(where, "port", f"{port!r} is not a port")
    for item in dep.env:
        if not isinstance(item, dict):
            raise _refuse(where, "env", "is not a list of variables")
        try:
            check_env_key(item.get("key"))  # type: ignore[arg-type]
        except (ValueError, TypeError):
            raise _refuse(where, "env", f"has a bad name {item.get('key')!r}") from None
    return dep


def check_version(version: object, *, where: str) -> int:
    """A release number: it names files (``logs/<app>/v<N>.log``) and tags."""
    if type(version) is int and 1 <= version < 2**63:
        return version
    raise _refuse(where, "version", f"{version!r} is not a release number")


def check_github_app(app: App) -> App:
    """An app the agent reports to GitHub for: its fields as web checked
    them, and the repository and environment it names GitHub with."""
    check_app(app)
    where = f"app {app.name!r}"
    checks = (("github_repo", check_github_repo), ("github_environment", check_github_environment))
    for field, check in checks:
        value = getattr(app, field)
        try:
            ok = isinstance(value, str) and check(value) == value
        except ValueError:
            ok = False
        if not ok:
            raise _refuse(where, field, f"{value!r} is not valid")
    return app


_SKEW = timedelta(minutes=5)  # a clock stepped back since a row was written


def _text(value: Any, *, most: int) -> bool:
    return isinstance(value, str) and len(value) <= most and "\0" not in value


def _check_notice_head(notice: Notice, *, channel: str, where: str) -> None:
    """What the outbox's order and back-off read: a row that could make the
    agent send at once forever, or never give up, is refused."""
    if notice.channel != channel:
        raise _refuse(where, "channel", f"{notice.channel!r} is not {channel!r}")
    if notice.app_name:
        check_app_name(notice.app_name, where=where)
    if not isinstance(notice.payload, dict):
        raise _refuse(where, "payload", "is not an object")
    if not (type(notice.attempts) is int and 0 <= notice.attempts <= 1000):
        raise _refuse(where, "attempts", f"{notice.attempts!r} is not a count of tries")
    now = datetime.now(UTC)
    for field in ("created_at", "next_at"):
        value = getattr(notice, field)
        if not isinstance(value, datetime):
            raise _refuse(where, field, f"{value!r} is not a time")
        if field == "created_at" and (value if value.tzinfo else value.replace(tzinfo=UTC)) > now + _SKEW:
            raise _refuse(where, field, "is in the future")


def github_report(notice: Notice, *, app: App) -> GitHubReport:
    """The calls a GitHub report makes, each as the agent wrote it: no other
    kind of call, no other state, a commit id or branch as the ref, the
    deployment's payload naming its own job, paas's own URLs."""
    where = f"GitHub report {notice.id}"
    _check_notice_head(notice, channel="github", where=where)
    if notice.app_id != app.id or (notice.app_name and notice.app_name != app.name):
        raise _refuse(where, "app", "is not the app it is sent for")
    if notice.event not in ("queued", "started", "ended"):
        raise _refuse(where, "event", f"{notice.event!r} is not a GitHub report")
    progress = notice.progress
    if not (
        isinstance(progress, dict)
        and set(progress) <= {"done", "deployment", "errors"}
        and (type(progress.get("done", 0)) is int and progress.get("done", 0) >= 0)
        and (type(progress.get("deployment", 1)) is int and progress.get("deployment", 1) > 0)
        and isinstance(progress.get("errors", []), list)
        and all(_text(error, most=2000) for error in progress.get("errors", []))
    ):
        raise _refuse(where, "progress", "is not what the agent records")
    report = _through(GitHubReport, notice.payload, where=where, field="payload")
    for index, op in enumerate(report.ops):
        if isinstance(op, DeploymentOp) and op.payload.paas_job != notice.job_id:
            raise _refuse(where, f"payload.ops[{index}].payload", "names another job")
    return report


def notify_message(notice: Notice) -> NotifyMessage:
    """A notification's title, body and kind, as the agent wrote them."""
    where = f"notification {notice.id}"
    _check_notice_head(notice, channel="notify", where=where)
    if notice.event not in EVENTS:
        raise _refuse(where, "event", f"{notice.event!r} is not an event")
    return _through(NotifyMessage, notice.payload, where=where, field="payload")
