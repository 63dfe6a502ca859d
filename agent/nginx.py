"""nginx sites: render from templates/nginx, swap in atomically, validate with
``nginx -t``, reload, and restore the previous file on any error.

One file per app (``paas-app-<name>.conf``) in ``PAAS_NGINX_CONF_DIR``, plus
``paas-0-common.conf`` for shared http-level definitions. Every switch holds
one lock, so two apps deploying at once never validate each other's
half-written file.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from jinja2 import Environment, PackageLoader, StrictUndefined

from agent import commands, probe
from paas.errors import ErrorKind, InvalidInput, PaasError, says_disk_full
from paas.files import atomic_write
from paas.settings import Settings

__all__ = [
    "CONTROL_SITE",
    "DEFAULT_SITE",
    "app_site",
    "NginxError",
    "NginxSites",
    "SiteSpec",
    "TlsHost",
    "certificate_paths",
    "render_common",
    "render_control",
    "render_default",
    "render_site",
]

Runner = Callable[..., commands.CommandResult]

COMMON_FILE = "paas-0-common.conf"
CONTROL_SITE = "0-control"  # the control plane's site file: paas-app-0-control.conf
DEFAULT_SITE = "0-default"  # unknown hostnames: paas-app-0-default.conf


class NginxError(PaasError):
    """nginx refused a site (``nginx -t``), did not reload, or does not serve it;
    ``kind`` says a full disk when nginx's output does, read here, once."""


@dataclass(frozen=True)
class TlsHost:
    """A hostname with a certificate on disk: served over HTTPS, HTTP redirects."""

    hostname: str
    certificate: str  # full chain, PEM
    key: str


@dataclass(frozen=True)
class SiteSpec:
    app: str
    version: int
    hostnames: tuple[str, ...]  # every hostname; the first is the default one
    upstreams: tuple[str, ...]  # host:port of each web container
    tls: tuple[TlsHost, ...] = ()
    hsts: bool = False


def certificate_paths(settings: Settings, hostname: str) -> TlsHost | None:
    """certbot's live files for ``hostname``, if both exist."""
    live = settings.letsencrypt_dir / "live" / hostname
    cert, key = live / "fullchain.pem", live / "privkey.pem"
    if cert.is_file() and key.is_file():
        return TlsHost(hostname, str(cert), str(key))
    return None


def _env() -> Environment:
    return Environment(
        loader=PackageLoader("templates", "nginx"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701  (nginx config, not HTML; inputs are validated names)
    )


def app_site(
    settings: Settings,
    *,
    app: str,
    version: int,
    upstreams: tuple[str, ...],
    hosts: tuple[tuple[str, bool], ...] = (),
    hsts: bool = False,
) -> SiteSpec:
    """What nginx should serve for a release of ``app``: its default hostname
    and ``hosts`` (hostname, has an issued certificate); HTTPS for those whose
    certificate files exist."""
    default = settings.app_hostname(app)
    names = [default] + [h for h, _ in hosts if h != default]
    if settings.control_host in names:
        raise InvalidInput(f"app {app!r} would be served at {settings.control_host}, the control plane's own")
    issued = {h for h, ok in hosts if ok}
    tls = tuple(t for t in (certificate_paths(settings, h) for h in names if h in issued) if t is not None)
    return SiteSpec(app=app, version=version, hostnames=tuple(names), upstreams=upstreams, tls=tls, hsts=hsts)


def listen_directive(settings: Settings, port: int) -> str:
    return f"{settings.listen_address}:{port}" if settings.listen_address else str(port)


def render_site(spec: SiteSpec, settings: Settings) -> str:
    return (
        _env()
        .get_template("site.conf.j2")
        .render(
            app=spec.app,
            version=spec.version,
            release_marker=release_marker(spec),
            upstream_name=f"paas_app_{spec.app.replace('-', '_')}",
            upstreams=spec.upstreams,
            hostnames=spec.hostnames,
            plain_hostnames=[h for h in spec.hostnames if h not in {t.hostname for t in spec.tls}],
            tls=spec.tls,
            hsts=spec.hsts,
            **_https_context(settings),
            listen=listen_directive(settings, settings.http_port),
            acme_webroot=str(settings.acme_webroot),
            client_max_body_size="100m",
            read_timeout=60,
        )
    )


VERIFY_STREAK = 5


def release_marker(spec: SiteSpec) -> str:
    return f"{spec.app} v{spec.version}"


def _https_context(settings: Settings) -> dict[str, str]:
    """What the HTTPS parts of every template need: where to listen, and the
    port suffix of redirects to HTTPS (none for 443)."""
    return {
        "listen_tls": listen_directive(settings, settings.https_port),
        "https_suffix": "" if settings.https_port == 443 else f":{settings.https_port}",
    }


def render_common() -> str:
    return _env().get_template("common.conf.j2").render()


def render_default(settings: Settings) -> str:
    """The default server for HTTP (and HTTPS unless PAAS_ACME is off): no answer for unknown hostnames."""
    return (
        _env()
        .get_template("default.conf.j2")
        .render(
            https=settings.acme,
            listen=listen_directive(settings, settings.http_port),
            **_https_context(settings),
        )
    )


def render_control(settings: Settings, *, tls: TlsHost | None = None) -> str:
    """The control plane's own site: GitHub and browsers reach web through it.
    With ``tls`` (its certificate on disk), HTTPS with HSTS as well; web answers plain HTTP
    (webhooks and probes served, the rest redirected or refused)."""
    return (
        _env()
        .get_template("control.conf.j2")
        .render(
            tls=tls,
            **_https_context(settings),
            hostname=settings.control_host,
            listen=listen_directive(settings, settings.http_port),
            upstream=f"{settings.web_host}:{settings.web_port}",
            acme_webroot=str(settings.acme_webroot),
            client_max_body_size=f"{settings.webhook_max_bytes // (1024 * 1024) + 1}m",
        )
    )


def site_filename(app: str) -> str:
    return f"paas-app-{app}.conf"


class NginxSites:
    """Owns the paas files in the nginx config directory."""

    _lock = threading.Lock()  # one switch at a time, across every pipeline thread

    def __init__(self, settings: Settings, *, runner: Runner = commands.run) -> None:
        self._settings = settings
        self._run = runner
        self._dir = settings.nginx_conf_dir

    def path(self, app: str) -> Path:
        return self._dir / site_filename(app)

    def current(self, app: str) -> str | None:
        try:
            return self.path(app).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def ensure_common(self) -> None:
        """Write the shared definitions if they differ (no reload needed
        before the first site uses them)."""
        with self._lock:
            self._dir.mkdir(parents=True, exist_ok=True)
            wanted = render_common()
            path = self._dir / COMMON_FILE
            if not path.exists() or path.read_text(encoding="utf-8") != wanted:
                _atomic_write(path, wanted)

    def apply(self, app: str, content: str | None) -> None:
        """Make the app's site ``content`` (None removes it), validate and
        reload; on any failure put the previous file back and raise."""
        with self._lock:
            path = self.path(app)
            previous = self.current(app)
            if previous == content:
                return
            self._dir.mkdir(parents=True, exist_ok=True)
            if content is None:
                path.unlink(missing_ok=True)
            else:
                _atomic_write(path, content)
            try:
                self._check_and_reload()
            except NginxError:
                if previous is None:
                    path.unlink(missing_ok=True)
                else:
                    _atomic_write(path, previous)
                raise

    def ensure_default(self) -> None:
        """The default server for unknown hostnames, validated and reloaded like a site."""
        try:
            self.apply(DEFAULT_SITE, render_default(self._settings))
        except NginxError as exc:
            raise NginxError(
                f"{exc} (does another default_server listen on the same port, such as Debian's "
                "/etc/nginx/sites-enabled/default? install.sh disables it)",
                kind=exc.kind,
            ) from exc

    def reload(self) -> None:
        """Validate and reload with the files as they are (a renewed certificate)."""
        with self._lock:
            self._check_and_reload()

    def verify(self, spec: SiteSpec, *, timeout: float = 10, span: float = 0) -> None:
        """Wait until nginx answers for ``spec`` with its release marker.

        A reload only signals nginx; this confirms the new site is what it
        serves. Raises NginxError if it never is (say, nginx does not include
        the conf dir). With ``span``, the answers must have been right for
        that long too: a worker of the old configuration that has not yet
        seen the reload can still accept a connection, and for a hostname
        that configuration did not know, it would answer nothing at all."""
        s = self._settings
        host = s.listen_address or "127.0.0.1"
        url = f"http://{host}:{s.http_port}/.well-known/paas-release"
        expected = release_marker(spec)
        deadline = time.monotonic() + timeout
        seen, streak, since = "", 0, 0.0
        while time.monotonic() < deadline:
            try:
                response = probe.get(url, headers={"Host": spec.hostnames[0]}, timeout=2)
                seen = f"HTTP {response.status_code} {response.text.strip()[:80]!r}"
                ok = response.status_code == 200 and response.text.strip() == expected
            except httpx.HTTPError as exc:
                seen, ok = type(exc).__name__, False
            # Old workers may accept a few more connections after the reload:
            # several fresh connections in a row must all see the new site.
            streak = streak + 1 if ok else 0
            since = since if ok and streak > 1 else time.monotonic()
            if streak >= VERIFY_STREAK and time.monotonic() - since >= span:
                return
            time.sleep(0.005 if ok else 0.05)
        raise NginxError(
            f"nginx reloaded but does not serve {expected!r} for {spec.hostnames[0]} (got {seen}); "
            f"does nginx include {self._dir}/*.conf?"
        )

    def answers(self) -> bool:
        """Whether nginx accepts connections on paas's HTTP port."""
        s = self._settings
        return probe.connects(s.listen_address or "127.0.0.1", s.http_port, timeout=2)

    def start(self) -> None:
        """Start nginx, checked first: systemd's unit when systemd runs the
        system nginx, else the binary (it daemonizes and reads every paas
        site from the configuration directory)."""
        s = self._settings
        test = self._run(commands.nginx_test_args(s.nginx_bin, s.nginx_main_conf), timeout=30)
        if not test.ok:
            raise _failed("nginx -t failed", test.output)
        if s.nginx_main_conf is None and commands.systemd_is_init():
            started = self._run(["systemctl", "start", "nginx"], timeout=60)
        else:
            started = self._run(commands.nginx_start_args(s.nginx_bin, s.nginx_main_conf), timeout=60)
        if not started.ok:
            raise _failed("nginx did not start", started.output)

    def _check_and_reload(self) -> None:
        s = self._settings
        test = self._run(commands.nginx_test_args(s.nginx_bin, s.nginx_main_conf), timeout=30)
        if not test.ok:
            raise _failed("nginx -t failed", test.output)
        reload = self._run(commands.nginx_reload_args(s.nginx_bin, s.nginx_main_conf), timeout=30)
        if not reload.ok:
            raise _failed("nginx reload failed (is nginx running?)", reload.output)


def _failed(what: str, output: str) -> NginxError:
    kind = ErrorKind.disk_full if says_disk_full(output) else ErrorKind.other
    return NginxError(f"{what}: {output.strip()}", kind=kind)


def _atomic_write(path: Path, content: str) -> None:
    """A site file nginx's workers can read, swapped in whole."""
    atomic_write(path, content, mode=0o644)
