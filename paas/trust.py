"""What the agent re-checks in every row it reads from the shared database.

The web process is internet-facing; assume it is taken over (DESIGN.md,
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
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from paas import queue, schemas
from paas.errors import InvalidInput
from paas.models import App, Deployment, Job
from paas.schemas import (
    COMMIT_ID,
    FULL_COMMIT,
    AppCreate,
    ScaleRequest,
    check_branch,
    check_env_key,
    normalize_hostname,
)

__all__ = ["UntrustedRow", "check_app", "check_app_name", "check_hostname", "check_job", "check_release"]

_VERSION_TAG = re.compile(r"paas/(?P<app>[a-z][a-z0-9-]{0,29}):v(?P<version>[1-9][0-9]{0,18})")
_CONTAINER_TAIL = re.compile(r"[a-z][a-z0-9_-]{0,29}-v[1-9][0-9]{0,18}-[0-9]{1,3}")  # after paas-<app>-
_UPSTREAM = re.compile(r"(?P<host>[0-9.]{7,15}):(?P<port>[0-9]{1,5})")
MAX_COMMAND = 4000  # a Procfile line


class UntrustedRow(InvalidInput):
    """A row read from the database fails the check web applies on input."""


def _refuse(where: str, field: str, why: str) -> UntrustedRow:
    return UntrustedRow(f"refusing {where}: its {field} {why} (the database was changed outside paas?)")


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


def check_hostname(hostname: object, *, where: str) -> str:
    try:
        if isinstance(hostname, str) and normalize_hostname(hostname) == hostname:
            return hostname
    except ValueError:
        pass
    raise _refuse(where, "hostname", f"{hostname!r} is not a hostname")


def _payload_checks() -> dict[str, Callable[[Any], bool]]:
    def ref(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        try:
            return check_branch(value.removeprefix("refs/heads/")) == value.removeprefix("refs/heads/")
        except ValueError:
            return False

    def text(value: Any) -> bool:
        return isinstance(value, str) and "\0" not in value and len(value) <= 10_000

    def version(value: Any) -> bool:
        return type(value) is int and 1 <= value < 2**63

    return {
        "ref": ref,
        "commit": lambda v: v == "" or (isinstance(v, str) and COMMIT_ID.fullmatch(v) is not None),
        "message": text,
        "trigger": text,
        "actor": text,
        "source_version": version,
        "env_version": lambda v: type(v) is int and 0 <= v < 2**63,
        "run_release": lambda v: type(v) is bool,
    }


_PAYLOAD = _payload_checks()


def check_job(job: Job) -> Job:
    where = f"job {job.id}"
    if job.kind not in (queue.DEPLOY, queue.RELEASE, queue.ROLLBACK, queue.DELETE):
        raise _refuse(where, "kind", f"{job.kind!r} is not a job kind")
    check_app_name(job.app_name, where=where)
    if not isinstance(job.payload, dict):
        raise _refuse(where, "payload", "is not an object")
    for key, value in job.payload.items():
        check = _PAYLOAD.get(key)
        if check is None:
            raise _refuse(where, "payload", f"has an unknown field {key!r}")
        if not check(value):
            raise _refuse(where, f"payload.{key}", f"{value!r} is not valid")
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
