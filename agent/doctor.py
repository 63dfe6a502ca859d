"""``paas doctor``: what operators get wrong, checked in one go, each
problem with how to fix it.

Each check gives ``ok``, ``warn`` (worth a look; paas works) or ``fail``
(something does not work, or will not: a deploy, a certificate, a
restart). The command exits 1 when any check fails. Nothing is changed
but a token file the port-80 check writes and removes, as the ACME
preflight does.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
from sqlmodel import select

from agent import commands
from agent.backup import NAME_PREFIX, SUFFIX
from agent.certs import Preflight
from agent.databases import database_stats
from agent.docker_engine import DockerEngine, EngineError
from agent.probe import connects, connects_unix
from paas import layout
from paas.crypto import FERNET_FILE, PRIVATE_FILE, PUBLIC_FILE
from paas.db import make_engine, session_scope
from paas.models import App, CertState, Database, Domain
from paas.settings import Settings, memory_bytes
from paas.trust import UntrustedRow, check_database

__all__ = ["Check", "run_checks"]

OK, WARN, FAIL = "ok", "warn", "fail"
GIB = 2**30
CLOCK_WARN, CLOCK_FAIL = timedelta(seconds=5), timedelta(seconds=60)  # ACME rejects a skewed clock
EXPIRY_WARN, EXPIRY_FAIL = timedelta(days=14), timedelta(days=3)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def run_checks(settings: Settings, docker: DockerEngine | None = None) -> list[Check]:
    checks: list[Check] = []
    for check in _CHECKS:
        try:
            found = check(settings, docker)
        except Exception as exc:  # noqa: BLE001  (one check's trouble is its own result)
            name = check.__name__.removeprefix("_").replace("_", " ")
            said = " ".join(str(exc).split())[:300]
            found = [Check(name, FAIL, f"the check itself failed: {type(exc).__name__}: {said}")]
        checks += found
    return checks


def _engine(settings: Settings, docker: DockerEngine | None) -> list[Check]:
    try:
        version, root = (docker or DockerEngine()).describe()
    except EngineError as exc:
        return [
            Check(
                "docker engine",
                FAIL,
                str(exc),
                "start it: systemctl start docker (without systemd: dockerd &); see `docker info`",
            )
        ]
    return [Check("docker engine", OK, f"Docker {version}, data in {root or '?'}")]


def _builds(settings: Settings, docker: DockerEngine | None) -> list[Check]:
    """The builder: BuildKit's cache against its bound, and what
    PAAS_BUILDER=buildkit needs (the CLI, the cgroupfs driver)."""
    docker = docker or DockerEngine()
    used, most = docker.build_cache_bytes(), memory_bytes(settings.build_cache_max)
    said = f"BuildKit's cache takes {used / 2**20:.0f} MiB (PAAS_BUILD_CACHE_MAX={settings.build_cache_max})"
    if used > 2 * most:
        found = [Check("build cache", WARN, said, "the hourly clean-up trims it; `docker builder prune` now")]
    else:
        found = [Check("build cache", OK, said)]
    if settings.builder != "buildkit":
        return [*found, Check("builder", OK, "the classic builder (PAAS_BUILDER=classic)")]
    problem = docker.buildkit_problem()
    if problem:
        said = f"builds fall back to the classic builder (no RUN --mount, no build secrets): {problem}"
        return [*found, Check("builder", WARN, said)]
    version = commands.run([settings.docker_cli, "version", "--format", "{{.Client.Version}}"], timeout=30)
    if not version.ok:
        fix = "install docker.io (its /usr/bin/docker has BuildKit built in), or set PAAS_DOCKER_CLI"
        return [*found, Check("builder", FAIL, f"{settings.docker_cli}: {version.output.strip()[:200]}", fix)]
    detail = f"BuildKit through {settings.docker_cli} {version.output.strip()}, steps capped at " + (
        f"{settings.build_memory} and {settings.build_pids} processes together"
    )
    return [*found, Check("builder", OK, detail)]


def _nginx(settings: Settings, docker: DockerEngine | None) -> list[Check]:
    found = []
    test = commands.run(commands.nginx_test_args(settings.nginx_bin, settings.nginx_main_conf), timeout=30)
    if test.ok:
        found.append(Check("nginx configuration", OK, "nginx -t passes"))
    else:
        found.append(
            Check(
                "nginx configuration",
                FAIL,
                " ".join(test.output.split())[-400:] or f"nginx -t exited {test.returncode}",
                f"fix the file nginx names; paas writes only {settings.nginx_conf_dir}/paas-*.conf",
            )
        )
    address = settings.listen_address or "127.0.0.1"
    if connects(address, settings.http_port):
        found.append(
            Check("nginx answers", OK, f"port {settings.http_port} on {address} accepts connections")
        )
    else:
        found.append(
            Check(
                "nginx answers",
                FAIL,
                f"nothing accepts connections on {address}:{settings.http_port}: every app is down",
                "start nginx: systemctl start nginx (without systemd: nginx); the agent rewrites paas's "
                "sites at its start",
            )
        )
    return found


def _control_plane(settings: Settings, docker: DockerEngine | None) -> list[Check]:
    found = []
    url = f"http://{settings.web_host}:{settings.web_port}/readyz"
    try:
        ready = httpx.get(url, timeout=5)
        body = ready.json() if ready.status_code == 200 else {}
        if ready.status_code == 200:
            found.append(Check("web", OK, f"ready, version {body.get('version', '?')}"))
        else:
            found.append(Check("web", FAIL, f"{url} answered {ready.status_code}", _START))
    except (httpx.HTTPError, ValueError) as exc:
        found.append(Check("web", FAIL, f"{url} does not answer ({type(exc).__name__})", _START))
    if connects_unix(settings.agent_socket):
        found.append(Check("agent", OK, f"answers on {settings.agent_socket}"))
    else:
        found.append(
            Check("agent", FAIL, f"nothing answers on {settings.agent_socket}: nothing deploys", _START)
        )
    return found


_START = (
    "start paas: systemctl start paas-web paas-agent (journalctl -u paas-web -u paas-agent says why "
    "it stopped), or deploy/install.sh without systemd (its log: /var/log/paas.log)"
)


def _dns(settings: Settings, docker: DockerEngine | None) -> list[Check]:
    preflight = Preflight(settings)
    ours = preflight.public_addresses()
    found = []
    wildcard = f"paas-doctor-{secrets.token_hex(4)}.{settings.domain}"
    for label, hostname in (
        ("DNS of the control plane", settings.control_host),
        ("DNS of *." + settings.domain, wildcard),
    ):
        try:
            addresses = preflight.resolve(hostname)
        except OSError as exc:
            addresses, error = [], str(exc)
        else:
            error = "no A or AAAA record"
        fix = (
            f"add DNS records pointing {settings.control_host} and *.{settings.domain} to this server "
            f"({', '.join(sorted(ours)) or 'its public address'})"
        )
        if not addresses:
            found.append(Check(label, FAIL, f"{hostname}: {error}", fix))
        elif ours and not set(addresses) & ours:
            found.append(
                Check(
                    label, FAIL, f"{hostname} points to {', '.join(addresses)}, not to PAAS_PUBLIC_IPS", fix
                )
            )
        else:
            found.append(Check(label, OK, f"{hostname} -> {', '.join(addresses)}"))
    return found


def _ports(settings: Settings, docker: DockerEngine | None) -> list[Check]:
    """Port 80 as the CA will reach it (the preflight's token, fetched from the
    addresses DNS gives), then the HTTPS port at the same addresses."""
    preflight = Preflight(settings)
    host = settings.control_host
    problem = preflight.preflight(host)
    if problem is not None:
        return [
            Check(
                f"port {settings.http_port} from outside",
                FAIL,
                problem[1],
                f"open port {settings.http_port} (and {settings.https_port}) in the firewall and the cloud "
                "provider's security group; point DNS here",
            )
        ]
    found = [Check(f"port {settings.http_port} from outside", OK, f"a token served for {host} came back")]
    if not settings.acme:
        found.append(Check(f"port {settings.https_port}", WARN, "PAAS_ACME is off: no HTTPS", _ACME_ON))
        return found
    addresses = preflight.resolve(host)
    if any(connects(a, settings.https_port) for a in addresses):
        found.append(Check(f"port {settings.https_port} from outside", OK, f"{host} accepts connections"))
    else:
        found.append(
            Check(
                f"port {settings.https_port} from outside",
                FAIL,
                f"no connection to {host} ({', '.join(addresses)}) on port {settings.https_port}",
                f"open port {settings.https_port} in the firewall and the cloud provider's security group",
            )
        )
    return found


_ACME_ON = "remove PAAS_ACME=off from /etc/paas/paas.env and restart paas: certificates come by themselves"


def disk_checks(settings: Settings, docker: DockerEngine | None) -> list[Check]:
    places = {"the data directory": settings.data_dir}
    try:
        _version, root = (docker or DockerEngine()).describe()
        if root and os.path.isdir(root):
            places["Docker's data"] = Path(root)
    except EngineError:
        pass
    found, seen = [], set()
    for label, path in places.items():
        while not path.exists() and path != path.parent:  # not made yet: the disk it will be on
            path = path.parent
        device = os.stat(path).st_dev
        if device in seen:
            continue
        seen.add(device)
        usage = shutil.disk_usage(path)
        free = usage.free / usage.total
        detail = f"{path}: {usage.free / GIB:.1f} GiB free of {usage.total / GIB:.1f} ({free:.0%})"
        fix = "free space: paas keeps PAAS_KEEP_RELEASES images per app; docker system df shows the rest"
        if free < 0.05 or usage.free < GIB:
            found.append(Check(f"disk of {label}", FAIL, detail + ": deploys will fail", fix))
        elif free < 0.15 or usage.free < 3 * GIB:
            found.append(Check(f"disk of {label}", WARN, detail, fix))
        else:
            found.append(Check(f"disk of {label}", OK, detail))
    return found


def _files(settings: Settings, docker: DockerEngine | None) -> list[Check]:
    if os.geteuid() != 0:
        return [Check("data directory and keys", WARN, "only root can check them", "run paas doctor as root")]
    found = []
    trouble = layout.problems(settings)
    if trouble:
        found.append(
            Check("data directory", FAIL, "; ".join(trouble), "run `paas migrate` as root: it sets them")
        )
    else:
        found.append(Check("data directory", OK, f"{settings.data_dir}: owners and modes as they must be"))
    keys = settings.keys_dir
    bad = []
    for name, owner_root in ((PRIVATE_FILE, True), (FERNET_FILE, False), (PUBLIC_FILE, False)):
        try:
            info = os.lstat(keys / name)
        except FileNotFoundError:
            bad.append(f"{name} is missing")
            continue
        if not stat.S_ISREG(info.st_mode) or stat.S_IMODE(info.st_mode) & 0o077:
            bad.append(f"{name} is {stat.S_IMODE(info.st_mode):04o}, must be 0600")
        if owner_root and info.st_uid != 0:
            bad.append(
                f"{name} belongs to uid {info.st_uid}, must be root's (the web user must never read it)"
            )
    if bad:
        found.append(
            Check(
                "encryption keys",
                FAIL,
                f"{keys}: {'; '.join(bad)}",
                "restore them from a backup (paas restore), never make new ones over stored secrets",
            )
        )
    else:
        found.append(Check("encryption keys", OK, f"{keys}: present, 0600"))
    return found


def _clock(settings: Settings, docker: DockerEngine | None) -> list[Check]:
    """This server's clock against the ACME server's (its Date header)."""
    verify: bool | str = str(settings.acme_ca_bundle) if settings.acme_ca_bundle else True
    try:
        answer = httpx.get(settings.acme_directory, timeout=5, verify=verify)
        theirs = parsedate_to_datetime(answer.headers["date"])
    except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
        return [
            Check(
                "clock",
                WARN,
                f"could not compare with {settings.acme_directory} ({type(exc).__name__})",
                _NTP,
            )
        ]
    skew = abs(datetime.now(UTC) - theirs)
    detail = f"{skew.total_seconds():.0f} s from {httpx.URL(settings.acme_directory).host}'s"
    if skew > CLOCK_FAIL:
        return [Check("clock", FAIL, detail + ": certificates and sign-ins go wrong", _NTP)]
    if skew > CLOCK_WARN:
        return [Check("clock", WARN, detail, _NTP)]
    return [Check("clock", OK, detail)]


_NTP = "keep the clock in time: apt-get install systemd-timesyncd (or chrony)"


def _certificates(settings: Settings, docker: DockerEngine | None) -> list[Check]:
    if not settings.acme:
        return [Check("certificates", WARN, "PAAS_ACME is off: everything travels in clear", _ACME_ON)]
    if settings.default_database and not (settings.db_dir / "paas.db").is_file():
        return [Check("certificates", FAIL, f"no database at {settings.db_dir / 'paas.db'}", _MIGRATE)]
    engine = make_engine(settings)
    now = datetime.now(UTC)
    found = []
    try:
        with session_scope(engine) as session:
            apps = {a.id: a.name for a in session.exec(select(App)).all()}
            for d in session.exec(select(Domain).order_by(Domain.hostname)).all():
                whose = apps.get(d.app_id, "?") if d.app_id is not None else "the control plane"
                name = f"certificate of {d.hostname} ({whose})"
                if d.cert_state == CertState.issued and d.cert_expires_at is not None:
                    expires = d.cert_expires_at
                    expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)  # SQLite: naive UTC
                    left = expires - now
                    detail = f"expires {expires:%Y-%m-%d} ({left.days} days)"
                    if left < EXPIRY_FAIL:
                        found.append(Check(name, FAIL, detail + ": renewals are failing", _RENEW))
                    elif left < EXPIRY_WARN:
                        found.append(Check(name, WARN, detail, _RENEW))
                    else:
                        found.append(Check(name, OK, detail))
                elif d.cert_state in (CertState.dns_mismatch, CertState.unreachable, CertState.failed):
                    found.append(Check(name, WARN, f"{d.cert_state}: {d.cert_error}", _RENEW))
                else:
                    found.append(Check(name, OK, f"{d.cert_state}"))
    finally:
        engine.dispose()
        layout.hold_database_files(settings)
    return found


_MIGRATE = "run `paas migrate` as root: it makes the layout, the database and the keys, and sets their modes"
_RENEW = "see the reason; `paas doctor` checks DNS and ports above; the agent retries by itself"


def _backups(settings: Settings, docker: DockerEngine | None) -> list[Check]:
    if not settings.backup_schedule:
        return [
            Check(
                "backups",
                WARN,
                "no PAAS_BACKUP_SCHEDULE: nothing is backed up unless you run `paas backup`",
                'set PAAS_BACKUP_SCHEDULE="30 3 * * *" (and PAAS_BACKUP_RCLONE_REMOTE) in /etc/paas/paas.env',
            )
        ]
    archives = sorted(settings.backups_dir.glob(f"{NAME_PREFIX}*{SUFFIX}"))
    if not archives:
        return [
            Check(
                "backups",
                WARN,
                f"scheduled ({settings.backup_schedule} UTC), none in {settings.backups_dir} yet",
            )
        ]
    newest = archives[-1]
    age = datetime.now(UTC) - datetime.fromtimestamp(newest.stat().st_mtime, UTC)
    detail = f"newest {newest.name}, {age.total_seconds() / 3600:.0f} h old"
    if age > timedelta(days=2):
        return [Check("backups", WARN, detail + ": the schedule is not running", "see the agent's log")]
    return [Check("backups", OK, detail)]


BACKUP_AGE_WARN = timedelta(days=2)
CONNECTIONS_WARN = 0.8  # of max_connections


def _databases(settings: Settings, docker: DockerEngine | None) -> list[Check]:
    """Each database: running and healthy, connections under 80% of its limit,
    and a good backup in the last two days."""
    engine = make_engine(settings)
    try:
        with session_scope(engine) as session:
            rows = [r for r in session.exec(select(Database)).all() if r.state in ("ready", "upgrading")]
            for r in rows:
                session.expunge(r)
    finally:
        engine.dispose()
        layout.hold_database_files(settings)
    found = []
    docker = docker or DockerEngine()
    for row in rows:
        name = f"database {row.name}"
        try:
            check_database(row, settings=settings)
        except UntrustedRow as exc:
            found.append(Check(name, FAIL, str(exc)))
            continue
        info = docker.container(row.container)
        if info is None or info.status != "running" or info.health != "healthy":
            state = "missing" if info is None else f"{info.status}, {info.health or 'no health yet'}"
            fix = f"`paas databases info {row.name}`; `docker logs {row.container}` says why"
            found.append(Check(name, FAIL, f"{row.container} is {state}", fix))
            continue
        stats = database_stats(docker, row)
        used, most = stats.get("connections", 0), stats.get("max_connections", 0)
        if most and used >= most * CONNECTIONS_WARN:
            found.append(
                Check(
                    name,
                    WARN,
                    f"{used} of {most} connections in use",
                    "fewer processes or smaller pools per app (a release runs old and new side by side: "
                    "count twice); or a bigger max_connections",
                )
            )
        else:
            found.append(
                Check(
                    name,
                    OK,
                    f"{row.engine} {row.server_version or row.version}, {used} of {most} connections",
                )
            )
        if row.last_backup_error:
            found.append(
                Check(f"{name} backup", FAIL, row.last_backup_error[:300], "`paas backup` says more")
            )
        elif row.last_backup_at is None or datetime.now(UTC) - _aware(row.last_backup_at) > BACKUP_AGE_WARN:
            when = "never" if row.last_backup_at is None else f"last {row.last_backup_at:%Y-%m-%d %H:%M} UTC"
            found.append(
                Check(
                    f"{name} backup",
                    WARN,
                    f"no backup in two days ({when})",
                    "`paas backup`, or PAAS_BACKUP_SCHEDULE",
                )
            )
    return found


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


_CHECKS: tuple[Callable[[Settings, DockerEngine | None], list[Check]], ...] = (
    _engine,
    _builds,
    _nginx,
    _control_plane,
    _dns,
    _ports,
    disk_checks,
    _files,
    _clock,
    _certificates,
    _backups,
    _databases,
)
