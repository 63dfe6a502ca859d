"""Web UI users: argon2id password hashes (argon2-cffi), created on the
server with `paas admin create-user`; there is never a default password.

Each user has a session version that every session cookie carries: a new
password or a deletion moves it on, and every session made before stops
working at its next request (web/sessions.py checks it)."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, select

from paas.errors import Conflict, InvalidInput, found
from paas.models import User, utcnow

__all__ = [
    "MIN_PASSWORD",
    "authenticate",
    "change_password",
    "create_user",
    "delete_user",
    "get_user",
    "list_users",
    "session_version",
]

MIN_PASSWORD = 12
_USERNAME = re.compile(r"[a-z][a-z0-9._-]{0,63}")
_hasher = PasswordHasher()
# verified against when the username is unknown, so both paths cost the same
_DUMMY = _hasher.hash("not a password anyone has")


def create_user(session: Session, *, username: str, password: str) -> User:
    username = username.strip().lower()
    if not _USERNAME.fullmatch(username):
        raise InvalidInput(
            "username must be 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter"
        )
    _check_password(password)
    if session.exec(select(User).where(User.username == username)).first() is not None:
        raise Conflict(f"a user named {username!r} already exists")
    user = User(username=username, password_hash=_hasher.hash(password))
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, *, username: str, password: str) -> User | None:
    """The user if the password is right (and its hash refreshed when the
    parameters changed), else None."""
    user = session.exec(select(User).where(User.username == username.strip().lower())).first()
    try:
        _hasher.verify(user.password_hash if user else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = utcnow()
    session.add(user)
    return user


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password must be at least {MIN_PASSWORD} characters")


def list_users(session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(User.username)).all())


def get_user(session: Session, username: str) -> User:
    user = session.exec(select(User).where(User.username == username.strip().lower())).first()
    return found(user, f"no user named {username!r}")


def change_password(session: Session, *, username: str, password: str) -> User:
    """Set a new password; every session the user had ends."""
    _check_password(password)
    user = get_user(session, username)
    user.password_hash = _hasher.hash(password)
    user.session_version += 1
    session.add(user)
    session.flush()
    return user


def delete_user(session: Session, *, username: str) -> None:
    """Remove the user; their sessions end at their next request."""
    session.delete(get_user(session, username))
    session.flush()


def session_version(session: Session, username: str) -> int | None:
    """The user's current session version, or None when there is no such user."""
    return session.exec(select(User.session_version).where(User.username == username)).first()
