"""What every page shares: the templates, rendering (with the CSRF token
and the one-time message), the signed-in check, forms whose CSRF token is
checked (``PostedDep``), and the error pages."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import ValidationError

__all__ = [
    "STALE_FORM",
    "NotSignedIn",
    "Posted",
    "PostedDep",
    "StaleForm",
    "check_csrf",
    "error_page",
    "field_errors",
    "flash",
    "login_redirect",
    "render",
    "signed_in",
]

templates = Jinja2Templates(
    env=Environment(loader=PackageLoader("templates", "ui"), autoescape=select_autoescape(["html"]))
)

STALE_FORM = "The form expired. Please try again."


class NotSignedIn(Exception):
    """Raised by pages for a visitor without a session; answered with a redirect."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return str(token)


def check_csrf(request: Request, given: str) -> bool:
    expected = request.session.get("csrf", "")
    return bool(expected) and hmac.compare_digest(str(expected), given)


def signed_in(request: Request) -> str:
    user = request.session.get("user")
    if not user:
        raise NotSignedIn(request.url.path)
    return str(user)


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("user", request.session.get("user"))
    context["csrf"] = csrf_token(request)
    # a message waits for the next whole page (not a fragment htmx fetches); error pages
    # can be rendered outside the session middleware
    if "session" in request.scope and not name.startswith("_"):
        context.setdefault("flash", request.session.pop("flash", None))
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def field_errors(exc: ValidationError, prefix: str = "") -> dict[str, str]:
    """Pydantic's errors in words, keyed by field ("prefix.field"; "prefix.form"
    for an error of the whole form), the first one of each field."""
    errors: dict[str, str] = {}
    for e in exc.errors():
        field = str(e["loc"][0]) if e["loc"] else "form"
        errors.setdefault(
            f"{prefix}.{field}" if prefix else field, str(e["msg"]).removeprefix("Value error, ")
        )
    return errors


def flash(request: Request, text: str, *, bad: bool = False) -> None:
    """A message shown once, on the next page (after a POST's redirect)."""
    request.session["flash"] = {"text": text, "bad": bad}


class StaleForm(Exception):
    """A POST whose CSRF token is missing or not this session's."""


@dataclass(frozen=True)
class Posted:
    """A signed-in user's form, its CSRF token checked."""

    user: str
    fields: dict[str, str]

    @property
    def actor(self) -> str:
        return f"user:{self.user}"

    def get(self, key: str, default: str = "") -> str:
        return self.fields.get(key, default)


async def posted(request: Request) -> Posted:
    user = request.session.get("user")
    if not user:
        raise NotSignedIn("/")
    form = await request.form(max_fields=300)
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if not check_csrf(request, fields.get("csrf", "")):
        raise StaleForm
    return Posted(str(user), fields)


PostedDep = Annotated[Posted, Depends(posted)]


ERROR_TITLES = {403: "Not allowed", 404: "Not found", 409: "Not now", 422: "Not valid", 500: "Server error"}


def error_page(request: Request, status_code: int, detail: str) -> HTMLResponse:
    title = ERROR_TITLES.get(status_code, "Something is wrong")
    if "session" not in request.scope:
        return HTMLResponse(f"<!doctype html><title>{status_code}</title><p>{title}", status_code=status_code)
    return render(request, "error.html", status_code, code=status_code, title=title, detail=detail)


def login_redirect(request: Request, exc: NotSignedIn) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(exc.next_path)}", status_code=303)
