"""Every nginx site paas serves, described in one place.

An app's site is its hostnames (the default one first), HTTPS for those whose
certificate is issued and on disk, HSTS if the app asks, and as upstreams
the web containers of its live release, read from Docker (their labels and
port bindings: Docker holds the truth). The control plane's site is its
hostname, with HTTPS once its certificate is issued. The switch step,
reconcile and the certificate manager all render through here; nginx.py
only writes, validates and reloads files.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from agent.docker_engine import ContainerInfo, DockerEngine
from agent.nginx import (
    CONTROL_SITE,
    NginxError,
    NginxSites,
    SiteSpec,
    app_site,
    certificate_paths,
    render_control,
    render_site,
)
from agent.plan import in_release, owned
from paas import queue
from paas.db import session_scope
from paas.errors import InvalidInput
from paas.models import App, CertState, Deployment, Domain
from paas.services import live_release
from paas.settings import Settings
from paas.trust import UntrustedRow, check_app, check_hostname, check_release

__all__ = ["Sites", "app_site_for", "site_hosts", "web_upstreams"]

log = logging.getLogger("paas.agent.sites")


def site_hosts(session: Session, app_id: int | None) -> tuple[tuple[str, bool], ...]:
    """(hostname, has an issued certificate) for an app, default first."""
    rows = session.exec(
        select(Domain)
        .where(Domain.app_id == app_id)
        .order_by(col(Domain.is_default).desc(), col(Domain.hostname))
    ).all()
    return tuple(
        (check_hostname(d.hostname, where=f"a domain of app {app_id}"), d.cert_state == CertState.issued)
        for d in rows
    )


def app_site_for(
    db: Engine, settings: Settings, app: App, *, version: int, upstreams: tuple[str, ...]
) -> SiteSpec:
    """The site of ``app`` serving release ``version`` from ``upstreams``."""
    with session_scope(db) as session:
        hosts = site_hosts(session, app.id)
    return app_site(settings, app=app.name, version=version, upstreams=upstreams, hosts=hosts, hsts=app.hsts)


def _index(container: ContainerInfo) -> int:
    found = re.search(r"-(\d+)$", container.name)
    return int(found.group(1)) if found else 0


def web_upstreams(containers: list[ContainerInfo], release: Deployment) -> tuple[str, ...]:
    """host:port of a release's web containers, in their order (web.1, web.2, ...).
    Releases made before process types have one container and no process label."""
    web = [
        c
        for c in containers
        if in_release(c.name, c.labels, release.id, release.containers)
        and c.labels.get("paas.process", "web") == "web"
        and c.published
    ]
    return tuple(c.published[0] for c in sorted(web, key=_index))


class Sites:
    def __init__(
        self, settings: Settings, db: Engine, nginx: NginxSites, docker: DockerEngine, instance: str
    ) -> None:
        self.settings = settings
        self.db = db
        self.nginx = nginx
        self.docker = docker
        self.instance = instance

    def live_upstreams(self, app: str, release: Deployment) -> tuple[str, ...]:
        assert release.id is not None
        return web_upstreams(self.docker.containers(owned(self.instance, app)), release)

    def refresh_app(self, app_name: str) -> None:
        """Re-render the app's site from its live release and its hostnames
        (a no-op when nothing changed); an app with a job running is left to
        that job, which renders the same way at its switch."""
        with session_scope(self.db) as session:
            app = session.exec(select(App).where(App.name == app_name)).first()
            if app is None or app.id is None or app.state != "active":
                return
            current = live_release(session, app)
            if current is None or queue.running_job(session, app.id) is not None:
                return
            try:
                check_app(app)
                check_release(current, app=app_name)
            except UntrustedRow as exc:
                log.error("app %s: not rendering its nginx site: %s", app_name, exc)
                return
            session.expunge(app)
            session.expunge(current)
        upstreams = self.live_upstreams(app_name, current)
        if not upstreams:
            return
        try:
            spec = app_site_for(self.db, self.settings, app, version=current.version, upstreams=upstreams)
        except (InvalidInput, UntrustedRow) as exc:
            log.error("app %s: not rendering its nginx site: %s", app_name, exc)
            return
        self._apply(
            app_name, render_site(spec, self.settings), f"app {app_name}: cannot update its nginx site"
        )

    def refresh_control(self) -> None:
        """The control plane's site: HTTPS once its certificate is issued."""
        with session_scope(self.db) as session:
            own = session.exec(
                select(Domain).where(
                    Domain.hostname == self.settings.control_host, col(Domain.app_id).is_(None)
                )
            ).first()
            issued = own is not None and own.cert_state == CertState.issued
        tls = certificate_paths(self.settings, self.settings.control_host) if issued else None
        self._apply(
            CONTROL_SITE,
            render_control(self.settings, tls=tls),
            "cannot update the control plane's nginx site",
        )

    def _apply(self, name: str, content: str, problem: str) -> None:
        if self.nginx.current(name) == content:
            return
        try:
            self.nginx.apply(name, content)
        except NginxError as exc:
            log.error("%s: %s", problem, exc)
