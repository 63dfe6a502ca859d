"""Settings: environment variables prefixed ``PAAS_`` (never a ``.env`` file).

Built by :func:`load_settings`, never at import time, so tests and daemons each
build their own. A missing or invalid variable raises :class:`SettingsError`
whose message names the variable. The server's settings file (``paas.env``)
is parsed here too, as data (:func:`settings_file_values`), for the server
commands and ``paas restore``.
"""

from __future__ import annotations

import io
import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from dotenv import dotenv_values
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from paas.errors import SettingsError

__all__ = [
    "SETTINGS_FILE",
    "Settings",
    "check_memory_size",
    "load_settings",
    "memory_bytes",
    "settings_file_values",
]

SETTINGS_FILE = Path("/etc/paas/paas.env")  # install.sh writes it; PAAS_ENV_FILE names another

_LOG_APP = re.compile(r"[a-z][a-z0-9-]{0,29}")  # an app name (paas.schemas.APP_NAME), as a directory

_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(\.{_LABEL})*")

Port = Annotated[int, Field(ge=1, le=65535)]
_MEMORY = re.compile(r"([0-9]{1,12})([kmg]?)")


DATABASE_VERSION = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){0,2}")
IMAGE_REPOSITORY = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*){0,2}")


def check_memory_size(value: str) -> str:
    """A memory size as docker reads it, at least 16m; lower-cased."""
    value = value.strip().lower()
    if not _MEMORY.fullmatch(value) or memory_bytes(value) < 16 * 1024 * 1024:
        raise ValueError("must be a size of at least 16m, such as 512m or 2g")
    return value


def settings_file_values(text: str) -> dict[str, str]:
    """A settings file's values (paas.env: one ``PAAS_NAME='value'`` line
    each), parsed as data with python-dotenv and no interpolation, as
    systemd's EnvironmentFile= takes them (no ``${...}`` expansion); a name
    without a value is left out."""
    parsed = dotenv_values(stream=io.StringIO(text), interpolate=False)
    return {name: value for name, value in parsed.items() if value is not None}


def memory_bytes(value: str) -> int:
    """512m -> bytes, as docker reads it (k, m, g: powers of 1024)."""
    match = _MEMORY.fullmatch(value.strip().lower())
    if match is None:
        raise ValueError(f"{value!r} is not a size such as 512m")
    return int(match[1]) * 1024 ** " kmg".index(match[2] or " ")


LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"


class Settings(BaseSettings):
    """Every path, port and binary paas uses. Defaults suit a Debian server.

    Read from the environment alone, never from a ``.env`` in the working
    directory: a root command typed where someone else writes must not take
    its settings from there (server commands read PAAS_ENV_FILE, see
    paas.cli.server; systemd gives the services the same file)."""

    model_config = SettingsConfigDict(
        env_prefix="PAAS_",
        env_file=None,
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    # where state lives (paas.layout says who may touch what)
    data_dir: Path = Path("/var/lib/paas")
    database_url: str = ""  # empty: SQLite file in data_dir/db
    run_dir: Path = Path("/run/paas")  # the agent's socket
    keys_dir: Path = Path("/etc/paas/keys")  # encryption keys for env values (0600 files)

    # names and addresses
    domain: str = "localhost"  # apps are served as <app>.<domain>
    # how GitHub and browsers reach the control plane; empty: http://<host>, then https://<host>
    # once its certificate is served
    public_url: str = ""
    host: str = ""  # the control plane's own hostname; empty: paas.<domain>

    # the web process (control plane) listens here, behind nginx
    web_host: str = "127.0.0.1"
    web_port: Port = 8000
    web_user: str = ""  # when started as root, web runs as this user (empty: nobody; never root)
    # the agent (root) sends notifications through Apprise as this user (empty: nobody; never root);
    # one of its own, not web's: install.sh makes paas-notify
    notify_user: str = ""
    webhook_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)

    # nginx
    nginx_bin: str = "nginx"
    nginx_conf_dir: Path = Path("/etc/nginx/conf.d")  # Debian's nginx includes *.conf here
    nginx_main_conf: Path | None = None  # None: the binary's compiled-in default
    http_port: Port = 80
    https_port: Port = 443
    listen_address: str = ""  # empty: every address; tests use 127.0.0.1

    # the agent
    agent_workers: int = Field(default=2, ge=1, le=32)  # apps built in parallel
    job_lease_seconds: int = Field(default=30, ge=5)
    poll_seconds: float = Field(default=0.5, gt=0)
    keep_releases: int = Field(default=10, ge=1)
    keep_release_logs: int = Field(default=50, ge=1)  # build and release logs, per app
    cleanup_interval_seconds: int = Field(default=3600, ge=10)  # the agent's scheduled clean-up
    nginx_check_seconds: int = Field(default=2, ge=1)  # the agent starts nginx again when it stops answering
    disk_check_seconds: int = Field(default=300, ge=1)  # "disk nearly full" notifications
    drain_seconds: float = Field(default=5.0, ge=0)
    stop_timeout: int = Field(default=10, ge=0)
    release_timeout: int = Field(default=600, ge=1)
    build_timeout: int = Field(default=1800, ge=1)
    build_network: str = ""  # docker network for RUN steps; empty: engine default
    # BuildKit through Docker's CLI (issue 31: agent/buildkit.py), or the classic builder (the
    # engine's build API, deprecated by Docker). BuildKit needs dockerd's cgroupfs driver to cap its
    # steps: on an engine where paas cannot cap them, each build says so and builds classic
    builder: Literal["classic", "buildkit"] = "buildkit"
    docker_cli: str = Field(default="/usr/bin/docker", pattern=r"^/[^\x00]*$")  # Debian's, BuildKit built in
    # apps may name a repository on this server (a path or file://): root reads any repository,
    # so only for tests and single-user servers
    allow_local_repos: bool = False
    # apps without a Dockerfile: the image they build FROM (a repo's Python pin picks the tag),
    # and gunicorn workers per web container (0: 2 × cores, at most 4; WEB_CONCURRENCY overrides)
    base_image: str = Field(default="python:3.11-slim", min_length=1, max_length=300)
    web_workers: int = Field(default=0, ge=0, le=64)
    max_containers_per_process: int = Field(default=10, ge=1, le=100)  # the ceiling of `paas scale`
    max_containers_per_app: int = Field(default=20, ge=1, le=1000)  # every process type together
    # what one app container (web, worker, release command) may take of the host; docker's
    # memory syntax (512m, 1g), swap not beyond it
    app_memory: str = "512m"
    app_cpus: float = Field(default=1.0, gt=0, le=256)
    app_pids: int = Field(default=512, ge=16, le=1_000_000)
    build_memory: str = "1g"  # a build's steps (compilers need more than a running app)
    build_pids: int = Field(default=2048, ge=16, le=1_000_000)  # BuildKit's steps, all together
    build_cache_max: str = "2g"  # BuildKit's cache after the hourly clean-up (least recently used go)
    # databases (`paas databases create`): the official images, an exact version of each (never
    # latest), the Debian release their tags name, and what one database container may take
    postgres_image: str = Field(default="postgres", min_length=1, max_length=200)
    postgres_version: str = "17"
    redis_image: str = Field(default="redis", min_length=1, max_length=200)
    redis_version: str = "7.2"  # the last Redis under the BSD licence (7.4 on is RSAL/SSPL)
    database_variant: str = Field(default="bookworm", pattern=r"^[a-z][a-z0-9.-]{0,30}$")
    database_memory: str = "256m"
    database_ready_timeout: int = Field(default=120, ge=5, le=3600)  # created → healthy
    port_range_start: Port = 20000
    port_range_end: Port = 29999

    # the web UI: signs its session cookies (install.sh writes one); empty: a random key per
    # process, so sign-ins do not survive a restart
    secret_key: str = Field(default="", repr=False)
    session_hours: int = Field(default=12, ge=1, le=24 * 30)  # a sign-in lasts at most this long
    session_idle_minutes: int = Field(default=60, ge=5, le=24 * 60)  # ...and ends after this long unused

    # HTTPS: certificates by ACME HTTP-01 (certbot, webroot mode)
    acme: bool = True  # off: no certificate is ever requested, and everything travels in clear
    acme_email: str = ""  # the CA's expiry notices go here; empty: registered without an email
    acme_directory: str = LETSENCRYPT  # or "staging", or any ACME directory URL (tests: Pebble)
    acme_ca_bundle: Path | None = None  # trust for the ACME server's own TLS (Pebble's test CA)
    certbot_bin: str = "certbot"
    # where nginx serves /.well-known/acme-challenge/ from: nginx's workers must be able to
    # read it (install.sh uses /var/lib/paas-acme); empty: <data_dir>/acme
    acme_webroot_dir: Path | None = None
    dns_resolver: str = ""  # host[:port] the preflight asks; empty: the system's resolvers
    public_ips: str = ""  # comma-separated addresses DNS must point to; empty: the token check decides
    cert_check_seconds: int = Field(default=300, ge=1)  # how often the agent looks at certificates
    cert_renew_days: int = Field(default=30, ge=1, le=3650)  # renew this long before expiry

    # backups (paas backup; the agent's schedule): where the settings file is, so that it goes
    # into the archive too; where scheduled archives go (empty: <data_dir>/backups) and how
    # many stay; a crontab line (empty: none scheduled); an rclone remote[:path] to copy each to
    env_file: Path = SETTINGS_FILE
    backup_dir: Path | None = None
    backup_schedule: str = ""
    backup_keep: int = Field(default=7, ge=1, le=1000)
    backup_with_images: bool = False
    backup_rclone_remote: str = ""
    rclone_bin: str = "rclone"

    # telling people (agent/tell/): GitHub's REST API (GitHub Enterprise Server: https://HOST/api/v3),
    # how long one call may take and the longest wait between tries; Apprise notifications: how long
    # one send may take, how many tries, the first wait (each next one is 4 times longer)
    github_api_url: str = "https://api.github.com"
    github_timeout: float = Field(default=10.0, gt=0, le=120)
    github_retry_max_seconds: int = Field(default=300, ge=1, le=3600)
    notify_timeout: int = Field(default=30, ge=1, le=600)
    notify_attempts: int = Field(default=4, ge=1, le=20)
    notify_retry_seconds: float = Field(default=5.0, gt=0, le=3600)

    @field_validator("domain")
    @classmethod
    def _check_domain(cls, value: str) -> str:
        value = value.strip().lower().rstrip(".")
        if not _HOSTNAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid DNS name")
        return value

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        """A DNS name or empty: it becomes nginx's ``server_name`` and a certificate's path."""
        value = value.strip().lower().rstrip(".")
        if value and not _HOSTNAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid DNS name")
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("github_api_url")
    @classmethod
    def _check_github_api_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not re.fullmatch(r"https://[^\s/]+(/\S*)?", value) and not re.fullmatch(
            r"http://127\.[0-9.]+(:[0-9]+)?(/\S*)?", value
        ):
            raise ValueError("must be an https:// URL (http:// only on 127.0.0.0/8, for tests)")
        return value

    @field_validator("acme_directory")
    @classmethod
    def _check_acme_directory(cls, value: str) -> str:
        value = value.strip()
        if value == "staging":
            return LETSENCRYPT_STAGING
        if not value.startswith("https://"):
            raise ValueError("must be an https:// ACME directory URL, or 'staging'")
        return value

    @field_validator("public_ips")
    @classmethod
    def _check_public_ips(cls, value: str) -> str:
        items = [item.strip() for item in value.split(",") if item.strip()]
        try:
            return ",".join(str(ipaddress.ip_address(item)) for item in items)
        except ValueError as exc:
            raise ValueError(f"must be comma-separated IP addresses ({exc})") from None

    @field_validator("dns_resolver")
    @classmethod
    def _check_dns_resolver(cls, value: str) -> str:
        value = value.strip()
        host, sep, port = value.rpartition(":")
        if value and sep and not (host and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError("must be host or host:port")
        return value

    @field_validator("backup_schedule")
    @classmethod
    def _check_backup_schedule(cls, value: str) -> str:
        value = " ".join(value.split())
        if value:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(value, timezone="UTC")
            except ValueError as exc:
                raise ValueError(f"must be a crontab line such as '30 3 * * *' ({exc})") from None
        return value

    @field_validator("backup_rclone_remote")
    @classmethod
    def _check_rclone_remote(cls, value: str) -> str:
        value = value.strip()
        if value and (value.startswith("-") or any(c.isspace() for c in value)):
            raise ValueError("must be an rclone remote such as 'b2:my-bucket/paas', without spaces")
        return value

    @field_validator("acme_email")
    @classmethod
    def _check_acme_email(cls, value: str) -> str:
        value = value.strip()
        if value and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
            raise ValueError("must be an email address")
        return value

    @field_validator("app_memory", "build_memory", "database_memory", "build_cache_max")
    @classmethod
    def _check_memory(cls, value: str) -> str:
        return check_memory_size(value)

    @field_validator("postgres_version", "redis_version")
    @classmethod
    def _check_database_version(cls, value: str) -> str:
        if not DATABASE_VERSION.fullmatch(value):
            raise ValueError("must be a version such as 17 or 17.2 (never latest)")
        return value

    @field_validator("postgres_image", "redis_image")
    @classmethod
    def _check_database_image(cls, value: str) -> str:
        if not IMAGE_REPOSITORY.fullmatch(value):
            raise ValueError("must be an image repository such as postgres, without a tag")
        return value

    @model_validator(mode="after")
    def _check_ranges(self) -> Settings:
        if self.port_range_end <= self.port_range_start:
            raise ValueError("PAAS_PORT_RANGE_END must be above PAAS_PORT_RANGE_START")
        return self

    # derived values -------------------------------------------------------

    @property
    def web_account(self) -> str:
        """The user web runs as when root starts it."""
        return self.web_user or "nobody"

    @property
    def notify_account(self) -> str:
        """The user the agent, as root, runs the notification sender as."""
        return self.notify_user or "nobody"

    @property
    def default_database(self) -> bool:
        """The SQLite file paas keeps in its own directory (no PAAS_DATABASE_URL)."""
        return not self.database_url

    @property
    def db_dir(self) -> Path:
        """The one directory the web process may write to."""
        return self.data_dir / "db"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.db_dir / 'paas.db'}"

    @property
    def control_host(self) -> str:
        return self.host or f"paas.{self.domain}"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def repos_dir(self) -> Path:
        return self.data_dir / "repos"

    @property
    def builds_dir(self) -> Path:
        return self.data_dir / "builds"

    @property
    def agent_socket(self) -> Path:
        """Where the agent answers web's questions about live containers."""
        return self.run_dir / "agent.sock"

    @property
    def letsencrypt_dir(self) -> Path:
        """certbot's config, work and logs directories (certificates under live/)."""
        return self.data_dir / "letsencrypt"

    @property
    def backups_dir(self) -> Path:
        return self.backup_dir or self.data_dir / "backups"

    @property
    def acme_webroot(self) -> Path:
        return self.acme_webroot_dir or self.data_dir / "acme"

    def app_hostname(self, app: str) -> str:
        return f"{app}.{self.domain}"

    def release_log(self, app: str, version: int) -> Path:
        """Where release v``version`` of ``app`` writes its build and release log.
        Both come from database rows: a name that is not an app name, or a
        version that is not a number, never becomes a path."""
        named = isinstance(app, str) and _LOG_APP.fullmatch(app) is not None
        if not named or not (type(version) is int and version >= 1):
            raise ValueError(f"no release log for {app!r} v{version!r}: not an app name and release number")
        return self.logs_dir / app / f"v{version}.log"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, failing fast.

    The error names the ``PAAS_`` variable that is missing or invalid.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) if err["loc"] else ""
            name = f"PAAS_{field.upper()}" if field else "PAAS settings"
            problems.append(f"{name}: {err['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
