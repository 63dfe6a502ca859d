"""Domains: the hostnames each app is served at, and their certificates' state.

Every app has its default hostname ``<app>.<PAAS_DOMAIN>`` and any number of
custom ones. Rows are intent and state only: the agent renders nginx from
them and requests, renews and verifies the certificates (agent/certs.py).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from paas import services
from paas.errors import Conflict, InvalidInput, found
from paas.models import App, CertState, Domain, utcnow
from paas.schemas import DomainPublic, normalize_hostname
from paas.settings import Settings

__all__ = ["add_domain", "all_domains", "domain_public", "ensure_defaults", "list_domains", "remove_domain"]


def ensure_defaults(session: Session, settings: Settings) -> None:
    """A row for every active app's default hostname and for the control
    plane's (app_id None); a default that changed with PAAS_DOMAIN is replaced."""
    wanted: dict[str, int | None] = {settings.control_host: None}
    for app in session.exec(select(App).where(App.state == "active")).all():
        # the control plane's own row is never handed to an app (one named after its host)
        wanted.setdefault(settings.app_hostname(app.name), app.id)
    existing = {d.hostname: d for d in session.exec(select(Domain).where(col(Domain.is_default))).all()}
    for hostname, domain in existing.items():
        if hostname not in wanted or domain.app_id != wanted[hostname]:
            session.delete(domain)
    session.flush()
    for hostname, app_id in wanted.items():
        if hostname not in existing or existing[hostname].app_id != app_id:
            taken = session.exec(select(Domain).where(Domain.hostname == hostname)).first()
            if taken is None:  # a custom domain of the same name keeps it
                session.add(Domain(app_id=app_id, hostname=hostname, is_default=True))
    session.flush()


def list_domains(session: Session, *, app: App, settings: Settings) -> list[DomainPublic]:
    ensure_defaults(session, settings)
    rows = session.exec(
        select(Domain)
        .where(Domain.app_id == app.id)
        .order_by(col(Domain.is_default).desc(), col(Domain.hostname))
    ).all()
    return [domain_public(d, settings).model_copy(update={"app": app.name}) for d in rows]


def all_domains(session: Session, *, settings: Settings) -> list[DomainPublic]:
    """Every hostname paas serves, the control plane's first, with its app."""
    ensure_defaults(session, settings)
    names = {a.id: a.name for a in session.exec(select(App)).all()}
    rows = session.exec(select(Domain).order_by(col(Domain.app_id).is_not(None), col(Domain.hostname))).all()
    return [domain_public(d, settings).model_copy(update={"app": names.get(d.app_id, "")}) for d in rows]


def domain_public(domain: Domain, settings: Settings) -> DomainPublic:
    renew_at = (
        domain.cert_expires_at - timedelta(days=settings.cert_renew_days) if domain.cert_expires_at else None
    )
    issued = domain.cert_state == CertState.issued
    return DomainPublic.model_validate(domain, from_attributes=True).model_copy(
        update={"https": issued, "expiring": bool(issued and renew_at and renew_at <= utcnow())}
    )


def add_domain(session: Session, *, app: App, hostname: str, settings: Settings, actor: str) -> Domain:
    """Serve ``app`` at ``hostname`` too (its certificate follows)."""
    services.check_active(app)
    name = _hostname(hostname)
    if name == settings.control_host:
        raise Conflict(f"{name} is the control plane's own hostname")
    if name.endswith(f".{settings.domain}") or name == settings.domain:
        raise InvalidInput(
            f"{name} is under PAAS_DOMAIN ({settings.domain}), whose names are the apps' default hostnames"
        )
    taken = session.exec(select(Domain).where(Domain.hostname == name)).first()
    if taken is not None:
        owner = session.get(App, taken.app_id) if taken.app_id else None
        where = f"app {owner.name!r}" if owner else "the control plane"
        raise Conflict(f"{name} is already served for {where}")
    state = CertState.pending if settings.acme else CertState.disabled
    domain = Domain(app_id=app.id, hostname=name, cert_state=state)
    session.add(domain)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"{name} is already served for another app") from None
    services.record_event(session, actor=actor, action="domain.add", app_name=app.name, detail=name)
    return domain


def remove_domain(session: Session, *, app: App, hostname: str, settings: Settings, actor: str) -> None:
    name = _hostname(hostname)
    if name == settings.app_hostname(app.name):
        raise Conflict(f"{name} is the app's default hostname; it cannot be removed")
    domain = found(
        session.exec(select(Domain).where(Domain.app_id == app.id, Domain.hostname == name)).first(),
        f"app {app.name!r} is not served at {name}",
    )
    if domain.is_default:
        raise Conflict(f"{name} is the app's default hostname; it cannot be removed")
    session.delete(domain)
    services.record_event(session, actor=actor, action="domain.remove", app_name=app.name, detail=name)


def _hostname(value: str) -> str:
    try:
        return normalize_hostname(value)
    except ValueError as exc:
        raise InvalidInput(f"hostname {exc}") from None
