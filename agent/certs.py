"""Certificates: every hostname paas serves gets one by ACME HTTP-01 (certbot
in webroot mode), renewed before expiry, and checked as actually served.

Only ACME lives here; what a site looks like is agent/sites.py. The agent
runs :meth:`CertManager.run_once` on a schedule. Each run:
1. makes sure every app's nginx site names all its hostnames (HTTP always
   serves ``/.well-known/acme-challenge/`` from the webroot, so issuing never
   needs a restart);
2. for each hostname without a certificate, runs a **preflight** first: DNS
   must point here and port 80 must serve a token we place. Otherwise the
   domain shows why, and nothing is asked of the CA (no burnt rate limits);
3. requests certificates (failures back off: 1 h, 6 h, then daily, with the
   CA's error text kept), renews those within PAAS_CERT_RENEW_DAYS of expiry;
4. after any change, re-renders the site (HTTPS on, HTTP redirects), reloads
   nginx and fetches the served certificate over TLS to compare it with the
   new one.

A certificate that exists and is not due is never requested again, however
often the agent restarts.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import socket
import ssl
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine
from sqlmodel import Session, select

from agent import commands
from agent.backoff import retry_delay
from agent.nginx import NginxSites
from agent.sites import Sites
from paas.db import session_scope
from paas.domains import ensure_defaults
from paas.models import App, CertState, Deployment, Domain, utcnow
from paas.services import live_release
from paas.settings import Settings
from paas.trust import UntrustedRow, check_hostname

__all__ = ["BACKOFF", "CertManager"]

log = logging.getLogger("paas.agent.certs")

EXPIRING_DAYS = 14  # a certificate this close to its end, not renewed: a notification
PREFLIGHT_DIR = ".well-known/acme-challenge"

Runner = Callable[..., commands.CommandResult]


def _retry_after(attempts: int) -> timedelta:
    """A CA's refusal is tried again after 1 h, 6 h, then daily."""
    return timedelta(seconds=retry_delay(attempts, first=3600, factor=6, most=86400))


BACKOFF = tuple(_retry_after(n) for n in (1, 2, 3))  # after 1, 2, 3+ failures


class Preflight:
    """Is a hostname ready for an HTTP-01 challenge? DNS points here, and
    port 80 serves a token we just wrote; asks nothing of the CA (the
    certificate manager's first step, and `paas doctor`'s)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # preflight ---------------------------------------------------------------------

    def preflight(self, hostname: str) -> tuple[CertState, str] | None:
        """None when DNS points here and port 80 serves our token; else the
        state and the reason, with no request made to the CA."""
        try:
            addresses = self.resolve(hostname)
        except OSError as exc:
            return CertState.dns_mismatch, f"DNS lookup of {hostname} failed: {exc}"
        if not addresses:
            return CertState.dns_mismatch, f"DNS has no A or AAAA record for {hostname}"
        ours = self.public_addresses()
        if ours:
            pointing = [a for a in addresses if a in ours]
            if not pointing:
                elsewhere, here = ", ".join(addresses), ", ".join(sorted(ours))
                return (
                    CertState.dns_mismatch,
                    f"DNS points elsewhere ({elsewhere}), not to this server ({here})",
                )
            addresses = pointing
        token = secrets.token_urlsafe(24)
        name = f"paas-preflight-{secrets.token_hex(8)}"
        path = self.settings.acme_webroot / PREFLIGHT_DIR / name
        self._ensure_webroot()
        path.write_text(token, encoding="ascii")
        path.chmod(0o644)
        try:
            errors = []
            for address in addresses:
                host = f"[{address}]" if ":" in address else address
                url = f"http://{host}:{self.settings.http_port}/{PREFLIGHT_DIR}/{name}"
                try:
                    response = httpx.get(url, headers={"Host": hostname}, timeout=5, follow_redirects=False)
                except httpx.HTTPError as exc:
                    errors.append(f"{address}: {type(exc).__name__}")
                    continue
                if response.status_code == 200 and response.text.strip() == token:
                    return None
                errors.append(f"{address}: HTTP {response.status_code}")
        finally:
            path.unlink(missing_ok=True)
        hint = "" if ours else " (set PAAS_PUBLIC_IPS to tell a DNS mismatch from a closed port)"
        port = self.settings.http_port
        return (
            CertState.unreachable,
            f"port {port} unreachable: our token did not come back ({'; '.join(errors)}){hint}",
        )

    def _ensure_webroot(self) -> None:
        """The challenge directory, readable by nginx's workers whatever our umask."""
        webroot = self.settings.acme_webroot
        for directory in (webroot, webroot / ".well-known", webroot / PREFLIGHT_DIR):
            directory.mkdir(exist_ok=True, parents=True)
            directory.chmod(0o755)

    def resolve(self, hostname: str) -> list[str]:
        """A and AAAA records, from PAAS_DNS_RESOLVER if set, else the system's resolvers."""
        import dns.exception
        import dns.resolver

        if not self.settings.dns_resolver:
            infos = socket.getaddrinfo(hostname, None, proto=socket.IPPROTO_TCP)
            return sorted({str(info[4][0]) for info in infos})
        host, sep, port = self.settings.dns_resolver.rpartition(":")
        if not sep:
            host, port = self.settings.dns_resolver, "53"
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = int(port)
        resolver.lifetime = 5
        found: set[str] = set()
        for kind in ("A", "AAAA"):
            try:
                found.update(r.to_text() for r in resolver.resolve(hostname, kind))
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
                continue
            except dns.exception.Timeout as exc:
                raise OSError(f"no answer from {self.settings.dns_resolver}") from exc
        return sorted(found)

    def public_addresses(self) -> set[str]:
        """PAAS_PUBLIC_IPS (checked when settings load), or empty: then only the token check decides."""
        return {item for item in self.settings.public_ips.split(",") if item}


class CertManager(Preflight):
    def __init__(
        self,
        settings: Settings,
        db: Engine,
        nginx: NginxSites,
        sites: Sites,
        *,
        runner: Runner = commands.run,
        tell: Callable[..., int] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self._tell = tell  # Teller.event: issued, failed, expiring notifications
        self._told_expiring: set[tuple[str, datetime]] = set()
        self.nginx = nginx  # reloaded after a renewal (same files, new contents)
        self.sites = sites  # re-rendered when a certificate is new
        self._run = runner

    # the scheduled job -----------------------------------------------------------

    def run_once(self) -> None:
        with session_scope(self.db) as session:
            ensure_defaults(session, self.settings)
            apps = {a.id: a.name for a in session.exec(select(App).where(App.state == "active")).all()}
            domains = [(d.id, d.hostname, d.app_id) for d in session.exec(select(Domain)).all()]
        for name in sorted(apps.values()):
            self.sites.refresh_app(name)
        self.sites.refresh_control()
        issued: dict[int | None, list[str]] = {}
        for domain_id, hostname, app_id in domains:
            if app_id is not None and app_id not in apps:
                continue
            try:
                check_hostname(hostname, where=f"domain {domain_id}")
            except UntrustedRow as exc:
                log.error("no certificate work: %s", exc)
                continue
            if self._work_on(domain_id, hostname, app_id):
                issued.setdefault(app_id, []).append(hostname)
        for app_id, hostnames in issued.items():
            if app_id is None:
                self.sites.refresh_control()
            else:
                self.sites.refresh_app(apps[app_id])
            for hostname in hostnames:  # HTTPS switched on: is it the certificate we just got?
                self.check_served(hostname)

    def _work_on(self, domain_id: int | None, hostname: str, app_id: int | None) -> bool:
        """Check, request or renew one certificate; True when a new one was
        issued and nginx should switch HTTPS on (a renewal reloads here)."""
        now = utcnow()
        with session_scope(self.db) as session:
            domain = session.get(Domain, domain_id)
            if domain is None:
                return False
            if not self.settings.acme:
                if domain.cert_state != CertState.disabled:
                    domain.cert_state, domain.cert_error = CertState.disabled, "PAAS_ACME is off"
                    session.add(domain)
                return False
            if app_id is not None and not self._live(session, app_id):
                return False  # no site serves it yet: nothing could answer the challenge
            state, expires, next_at = domain.cert_state, domain.cert_expires_at, domain.next_attempt_at
        if (
            state == CertState.issued
            and expires is not None
            and expires - timedelta(days=EXPIRING_DAYS) < now
        ):
            self._expiring(hostname, expires)
        if next_at is not None and next_at > now:
            return False  # backing off after a CA failure (a failed renewal too)
        renew = False
        if state == CertState.issued:
            if expires is None or expires - timedelta(days=self.settings.cert_renew_days) > now:
                return False
            renew = True
        if not renew:
            problem = self.preflight(hostname)
            if problem is not None:
                self._record(domain_id, state=problem[0], error=problem[1], checked=True)
                return False
        return self._request(domain_id, hostname, renew=renew)

    # the CA ----------------------------------------------------------------------------

    def _request(self, domain_id: int | None, hostname: str, *, renew: bool) -> bool:
        s = self.settings
        what = "renewing" if renew else "requesting"
        log.info("%s a certificate for %s from %s", what, hostname, s.acme_directory)
        args = commands.certbot_args(
            s.certbot_bin,
            hostname=hostname,
            email=s.acme_email,
            directory=s.acme_directory,
            webroot=s.acme_webroot,
            state_dir=s.letsencrypt_dir,
            force_renewal=renew,
        )
        env = {"REQUESTS_CA_BUNDLE": str(s.acme_ca_bundle)} if s.acme_ca_bundle else None
        result = self._run(args, timeout=300, env=env)
        cert = s.letsencrypt_dir / "live" / hostname / "fullchain.pem"
        if not result.ok or not cert.is_file():
            error = _ca_error(result.output)
            log.warning("certificate for %s: %s", hostname, error)
            attempts = 0
            with session_scope(self.db) as session:
                domain = session.get(Domain, domain_id)
                if domain is not None:
                    domain.attempts += 1
                    attempts = domain.attempts
                    domain.next_attempt_at = utcnow() + _retry_after(domain.attempts)
                    domain.cert_error = error
                    domain.checked_at = utcnow()
                    if not renew:  # a certificate still valid keeps serving
                        domain.cert_state = CertState.failed
                    session.add(domain)
            if attempts == 1:  # the first failure in a row; the back-off retries quietly
                self._notify(
                    "cert.failed",
                    hostname,
                    f"the certificate for {hostname} could not be {'renewed' if renew else 'issued'}",
                    f"{error}\nRetried with a back-off; `paas doctor` checks DNS and port 80.",
                    "failure",
                )
            return False
        expires = _expiry(cert)
        with session_scope(self.db) as session:
            domain = session.get(Domain, domain_id)
            if domain is not None:
                domain.cert_state, domain.cert_expires_at = CertState.issued, expires
                domain.cert_error, domain.attempts, domain.next_attempt_at = "", 0, None
                domain.checked_at = utcnow()
                session.add(domain)
        log.info("certificate for %s issued, valid until %s", hostname, expires.isoformat())
        self._notify(
            "cert.issued",
            hostname,
            f"a certificate for {hostname} was {'renewed' if renew else 'issued'}",
            f"valid until {expires:%Y-%m-%d}",
            "success",
        )
        if renew:
            self.nginx.reload()  # same file names, new contents
            self.check_served(hostname)
            return False
        return True

    def _expiring(self, hostname: str, expires: datetime) -> None:
        if (hostname, expires) in self._told_expiring:
            return
        if self._notify(
            "cert.expiring",
            hostname,
            f"the certificate for {hostname} expires on {expires:%Y-%m-%d}",
            "Renewal has not succeeded yet: `paas domains list` says why; `paas doctor` checks DNS, port 80.",
            "warning",
        ):
            self._told_expiring.add((hostname, expires))  # once per certificate, to whoever listens

    def _notify(self, event: str, hostname: str, title: str, body: str, kind: str) -> int:
        """How many targets will hear it."""
        if self._tell is None:
            return 0
        with session_scope(self.db) as session:
            domain = session.exec(select(Domain).where(Domain.hostname == hostname)).first()
            app = session.get(App, domain.app_id) if domain is not None and domain.app_id else None
            app_name = app.name if app is not None else ""
        try:
            return int(
                self._tell(
                    event, app_name=app_name, title=f"{app_name or 'paas'}: {title}", body=body, kind=kind
                )
            )
        except Exception:  # noqa: BLE001  (a notification never stops certificate work)
            log.exception("could not record the %s notification", event)
            return 0

    def check_served(self, hostname: str, *, timeout: float = 10) -> bool:
        """Fetch the certificate nginx serves for ``hostname`` over TLS and
        compare it with the one on disk; the result is logged and recorded."""
        wanted = _leaf_sha256(self.settings.letsencrypt_dir / "live" / hostname / "fullchain.pem")
        deadline, seen = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            seen = served_sha256(self.settings, hostname)
            if seen == wanted:
                log.info("nginx serves the new certificate for %s", hostname)
                return True
            time.sleep(0.2)
        message = f"nginx does not serve the new certificate for {hostname} (serves {seen or 'nothing'})"
        log.error(message)
        with session_scope(self.db) as session:
            domain = session.exec(select(Domain).where(Domain.hostname == hostname)).first()
            if domain is not None:
                domain.cert_error = message
                session.add(domain)
        return False

    # helpers ---------------------------------------------------------------------------

    @staticmethod
    def _live(session: Session, app_id: int) -> Deployment | None:
        app = session.get(App, app_id)
        return live_release(session, app) if app is not None else None

    def _record(self, domain_id: int | None, *, state: CertState, error: str, checked: bool) -> None:
        with session_scope(self.db) as session:
            domain = session.get(Domain, domain_id)
            if domain is None:
                return
            if domain.cert_state != state or domain.cert_error != error:
                log.info("%s: %s", domain.hostname, error)
            domain.cert_state, domain.cert_error = state, error
            if checked:
                domain.checked_at = utcnow()
            session.add(domain)


def served_sha256(settings: Settings, hostname: str) -> str:
    """SHA-256 of the certificate nginx presents for ``hostname`` (SNI), or ""."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # we compare it ourselves, byte for byte
    host = settings.listen_address or "127.0.0.1"
    try:
        with (
            socket.create_connection((host, settings.https_port), timeout=3) as raw,
            context.wrap_socket(raw, server_hostname=hostname) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except OSError:
        return ""
    return hashlib.sha256(der).hexdigest() if der else ""


def _load_pem(path: Path) -> Any:
    """A certificate file, read by cryptography's x509 (imported here, at the
    first certificate: 3.4 MiB an agent without any does not hold)."""
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes())


def _leaf_sha256(path: Path) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha256(_load_pem(path).public_bytes(Encoding.DER)).hexdigest()


def _expiry(path: Path) -> datetime:
    return _load_pem(path).not_valid_after_utc  # type: ignore[no-any-return]


def _ca_error(output: str) -> str:
    """The CA's words from certbot's output: its Detail lines, else the last lines."""
    lines = [" ".join(line.split()) for line in output.splitlines() if line.strip()]
    detail = [
        line for line in lines if line.startswith(("Detail:", "Type:")) or "urn:ietf:params:acme" in line
    ]
    chosen = detail or lines[-3:] or ["certbot failed without output"]
    return " ".join(chosen)[:2000]
