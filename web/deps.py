"""FastAPI dependencies: settings, a database session per request, the caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session

from paas import tokens
from paas.crypto import Keyring
from paas.db import session_scope
from paas.models import ApiToken
from paas.schemas import MAX_ROW_ID
from paas.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="An API token from `paas admin create-token`")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    engine: Engine = request.app.state.engine
    with session_scope(engine) as session:
        yield session


def get_keyring(request: Request) -> Keyring:
    keyring: Keyring = request.app.state.keyring
    return keyring


SettingsDep = Annotated[Settings, Depends(get_settings)]
KeyringDep = Annotated[Keyring, Depends(get_keyring)]
# committed before the response is sent (scope "function"): an answer never claims what a failed
# commit (a full disk, say) did not keep
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
# a job id or release version in a path: bounded, so no database is asked for an impossible row
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


def current_token(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiToken:
    token = tokens.authenticate_token(session, credentials.credentials) if credentials else None
    if token is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid API token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    session.commit()  # keep last_used_at even if the route later fails
    return token


CurrentToken = Annotated[ApiToken, Depends(current_token)]


def actor(token: ApiToken) -> str:
    return f"token:{token.name}"
