"""Request and response shapes shared by the API and the CLI.

Validation lives here so that every door (API, CLI, UI) refuses the same bad
input with the same message, naming the field.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import PurePosixPath

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "AppCreate",
    "AppCreated",
    "AppPublic",
    "AppUpdate",
    "DeployRequest",
    "DeploymentPublic",
    "JobPublic",
]

APP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,29}$")
_BRANCH = re.compile(r"^[A-Za-z0-9._/-]{1,255}$")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+$")  # git@github.com:o/r.git


def check_app_name(value: str) -> str:
    if not APP_NAME.match(value) or value.endswith("-") or "--" in value:
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
        return value
    if _SCP_LIKE.match(value) or value.startswith("/"):
        return value
    raise ValueError(
        "must be an https://, ssh:// or git@host:path URL, or an absolute local path"
    )


def check_branch(value: str) -> str:
    value = value.strip()
    if (
        not _BRANCH.match(value)
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


class AppCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    repo_url: str
    branch: str = "main"
    source_dir: str = ""
    dockerfile: str = "Dockerfile"
    port: int | None = Field(default=None, ge=1, le=65535)
    health_path: str | None = None
    health_interval: float = Field(default=1.0, gt=0, le=60)
    health_timeout: float = Field(default=5.0, gt=0, le=120)
    health_retries: int = Field(default=60, ge=1, le=1000)
    data_path: str | None = None

    @field_validator("data_path")
    @classmethod
    def _data_path(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        path = PurePosixPath(value)
        if not path.is_absolute() or ".." in path.parts or str(path) == "/":
            raise ValueError("must be an absolute path inside the container, such as /data")
        return str(path)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_app_name(value)

    @field_validator("repo_url")
    @classmethod
    def _repo_url(cls, value: str) -> str:
        return check_repo_url(value)

    @field_validator("branch")
    @classmethod
    def _branch(cls, value: str) -> str:
        return check_branch(value)

    @field_validator("source_dir")
    @classmethod
    def _source_dir(cls, value: str) -> str:
        return check_relative_path(value)

    @field_validator("dockerfile")
    @classmethod
    def _dockerfile(cls, value: str) -> str:
        checked = check_relative_path(value)
        if not checked:
            raise ValueError("is required")
        return checked

    @field_validator("health_path")
    @classmethod
    def _health_path(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith("/") or any(ch.isspace() for ch in value):
            raise ValueError("must be a URL path starting with '/'")
        return value


class AppUpdate(BaseModel):
    """Change an app's settings; omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    repo_url: str | None = None
    branch: str | None = None
    source_dir: str | None = None
    dockerfile: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    health_path: str | None = None
    health_interval: float | None = Field(default=None, gt=0, le=60)
    health_timeout: float | None = Field(default=None, gt=0, le=120)
    health_retries: int | None = Field(default=None, ge=1, le=1000)
    data_path: str | None = None

    @model_validator(mode="after")
    def _check(self) -> AppUpdate:
        # Reuse AppCreate's validators on the fields that were given.
        given = self.model_dump(exclude_unset=True)
        probe = {"name": "probe", "repo_url": "/probe", **given}
        checked = AppCreate.model_validate(probe)
        for key in given:
            object.__setattr__(self, key, getattr(checked, key))
        return self


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
    state: str
    url: str = ""
    webhook_url: str = ""
    current_version: int | None = None
    current_commit: str | None = None
    created_at: datetime


class AppCreated(AppPublic):
    """The answer to app creation: the only time the webhook secret is shown."""

    webhook_secret: str


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ref: str | None = None

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        return None if value in (None, "") else check_branch(value)


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
    deployment_id: int | None
    superseded_by: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    version: int | None = None
