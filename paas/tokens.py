"""API tokens: made on the server, shown once and stored as SHA-256 hashes;
they may expire, are revoked at once, and record when they were last used
(coarsely: no write per request)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlmodel import Session, col, select

from paas import services
from paas.errors import InvalidInput, NotFound
from paas.models import ApiToken, utcnow

__all__ = ["TOKEN_PREFIX", "authenticate_token", "create_token", "list_tokens", "revoke_tokens"]

TOKEN_PREFIX = "paas_"  # noqa: S105  (a prefix, not a secret)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


LAST_USED_EVERY = timedelta(minutes=1)  # last_used_at is coarse: no write per request


def create_token(session: Session, *, name: str, lifetime: timedelta | None = None) -> str:
    """Create an API token and return it; only its hash is stored. With a
    ``lifetime`` it stops working when that has passed."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput("token name must be 1-100 characters")
    if lifetime is not None and lifetime <= timedelta(0):
        raise InvalidInput("a token's lifetime must be positive")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = utcnow() + lifetime if lifetime is not None else None
    session.add(ApiToken(name=name, token_hash=_hash_token(token), prefix=token[:12], expires_at=expires))
    services.record_event(session, actor="admin", action="token.create", detail=f"token {name!r}")
    return token


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.exec(select(ApiToken).order_by(col(ApiToken.created_at))).all())


def revoke_tokens(session: Session, *, name: str, actor: str) -> int:
    """Delete every token named ``name`` (or whose shown prefix it is); the
    next request with one gets 401. Returns how many."""
    rows = session.exec(select(ApiToken).where((ApiToken.name == name) | (ApiToken.prefix == name))).all()
    if not rows:
        raise NotFound(f"no API token named {name!r}")
    for row in rows:
        session.delete(row)
    services.record_event(session, actor=actor, action="token.revoke", detail=f"token {name!r} ({len(rows)})")
    return len(rows)


def authenticate_token(session: Session, token: str) -> ApiToken | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == _hash_token(token))).first()
    if row is None:
        return None
    now = utcnow()
    if row.expires_at is not None and row.expires_at <= now:
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_EVERY:
        row.last_used_at = now
        session.add(row)
    return row
