"""The web UI: server-rendered pages (templates/ui), signed-in with a
username and password. Sessions are Starlette's signed cookie (HttpOnly,
SameSite=Lax, Secure over HTTPS, host-only so app subdomains cannot read
it); every form carries a per-session CSRF token; sign-in attempts are
slowed per (address, username) pair. Pages call the same services as the API.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import ValidationError
from sqlmodel import Session, col, select

from paas import services, users
from paas.errors import Conflict, InvalidInput
from paas.models import App, Deployment, DeploymentStatus, Job, JobState
from paas.schemas import AppCreate
from web.deps import KeyringDep, SessionDep, SettingsDep
from web.sessions import start_session

__all__ = ["LoginThrottle", "Posted", "PostedDep", "flash", "render", "router", "signed_in"]

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(
    env=Environment(loader=PackageLoader("templates", "ui"), autoescape=select_autoescape(["html"]))
)


class LoginThrottle:
    """Sign-ins slowed per (address, username) pair with growing delays, never
    blocked per username: whoever guesses from one address cannot lock the
    owner out from another.

    A pair has FREE_FAILURES failures free; each one after that doubles the
    wait before the pair may try again (1 s, 2 s, 4 s, ... at most
    MAX_DELAY). An address that fails for many usernames is slowed the same
    way as a whole, after ADDRESS_FREE_FAILURES. A success clears its pair.
    Entries are forgotten FORGET_SECONDS after their last failure and at
    most MAX_ENTRIES are kept (the oldest go first), so random usernames
    cannot grow memory. In memory: one web process."""

    FREE_FAILURES = 3
    ADDRESS_FREE_FAILURES = 20
    MAX_DELAY = 15 * 60.0
    FORGET_SECONDS = 3600.0
    MAX_ENTRIES = 10_000

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._entries: OrderedDict[tuple[str, ...], tuple[int, float]] = OrderedDict()  # failures, last
        self._lock = threading.Lock()
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def _keys(self, address: str, username: str) -> tuple[tuple[tuple[str, ...], int], ...]:
        pair = ("pair", address, username.strip().lower()[:200])
        return (pair, self.FREE_FAILURES), (("address", address), self.ADDRESS_FREE_FAILURES)

    def _sweep(self, now: float) -> None:
        while self._entries:
            key, (_failures, last) = next(iter(self._entries.items()))
            if now - last <= self.FORGET_SECONDS and len(self._entries) <= self.MAX_ENTRIES:
                return
            del self._entries[key]

    def wait(self, address: str, username: str) -> int:
        """Whole seconds before this pair may try again; 0 when it may now."""
        with self._lock:
            now = self._clock()
            self._sweep(now)
            waits = [0.0]
            for key, free in self._keys(address, username):
                failures, last = self._entries.get(key, (0, now))
                if failures > free:
                    waits.append(last + min(2.0 ** (failures - free - 1), self.MAX_DELAY) - now)
            return int(max(waits) + 0.999)

    def failed(self, address: str, username: str) -> None:
        with self._lock:
            now = self._clock()
            for key, _free in self._keys(address, username):
                failures, _last = self._entries.pop(key, (0, now))
                self._entries[key] = (failures + 1, now)  # now the newest
            self._sweep(now)

    def succeeded(self, address: str, username: str) -> None:
        with self._lock:
            self._entries.pop(self._keys(address, username)[0][0], None)


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


def _safe_next(value: str) -> str:
    """Only a path on this site (never //host or a URL): no open redirect."""
    return value if value.startswith("/") and not value.startswith("//") and "\\" not in value else "/"


@router.get("/login")
def login_page(request: Request, next: str = "/") -> HTMLResponse:  # noqa: A002  (the query name)
    return render(request, "login.html", next=_safe_next(next), error="", username="")


@router.post("/login", response_model=None)
def login(
    request: Request,
    session: SessionDep,
    username: str = Form(default="", max_length=200),
    password: str = Form(default="", max_length=1000),
    csrf: str = Form(default="", max_length=200),
    next: str = Form(default="/", max_length=2000),  # noqa: A002
) -> Response:
    target = _safe_next(next)
    if not check_csrf(request, csrf):
        return render(request, "login.html", 403, next=target, username=username, error=STALE_FORM)
    throttle: LoginThrottle = request.app.state.login_throttle
    client = request.client.host if request.client else "?"
    wait = throttle.wait(client, username)
    if wait:
        error = f"Too many failed sign-ins from here. Try again in {wait} seconds."
        return render(request, "login.html", 429, next=target, username=username, error=error)
    user = users.authenticate(session, username=username, password=password)
    if user is None:
        throttle.failed(client, username)
        return render(
            request, "login.html", 401, next=target, username=username, error="Wrong username or password."
        )
    throttle.succeeded(client, username)
    start_session(request.session, user)
    request.session["csrf"] = secrets.token_urlsafe(32)
    return RedirectResponse(target, status_code=303)


STALE_FORM = "The form expired. Please try again."


@router.post("/logout", response_model=None)
def logout(request: Request, csrf: str = Form(default="", max_length=200)) -> Response:
    if not check_csrf(request, csrf):
        return HTMLResponse("The form expired: reload the page and sign out again.", status_code=403)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/account")
def account_page(request: Request) -> HTMLResponse:
    signed_in(request)
    return render(request, "account.html", error="", min_length=users.MIN_PASSWORD)


@router.post("/account/password", response_model=None)
def change_password(request: Request, session: SessionDep, form: PostedDep) -> Response:
    """A new password for the signed-in user, after the current one: every
    other session of theirs ends, this one goes on (renewed)."""

    def refuse(status_code: int, error: str) -> HTMLResponse:
        return render(request, "account.html", status_code, error=error, min_length=users.MIN_PASSWORD)

    throttle: LoginThrottle = request.app.state.login_throttle
    client = request.client.host if request.client else "?"
    wait = throttle.wait(client, form.user)
    if wait:
        return refuse(429, f"Too many wrong passwords. Try again in {wait} seconds.")
    if users.authenticate(session, username=form.user, password=form.get("current")) is None:
        throttle.failed(client, form.user)
        return refuse(401, "The current password is wrong.")
    if form.get("new") != form.get("confirm"):
        return refuse(422, "The new password and its confirmation differ.")
    try:
        user = users.change_password(session, username=form.user, password=form.get("new"))
    except InvalidInput as exc:
        return refuse(422, str(exc).capitalize() + ".")
    services.record_event(session, actor=form.actor, action="user.password", detail=user.username)
    start_session(request.session, user)
    request.session["csrf"] = secrets.token_urlsafe(32)
    flash(request, "Password changed. Your other sessions have ended.")
    return RedirectResponse("/", status_code=303)


@router.get("/")
def apps_page(request: Request, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    signed_in(request)
    rows = [app_row(session, app, settings) for app in services.list_apps(session)]
    return render(request, "apps.html", apps=rows)


@router.get("/new")
def new_app_page(request: Request) -> HTMLResponse:
    signed_in(request)
    return render(request, "new_app.html", values={"branch": "main"}, errors={})


@router.post("/new", response_model=None)
def create_app(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    keyring: KeyringDep,
    name: str = Form(default="", max_length=200),
    repo_url: str = Form(default="", max_length=2000),
    branch: str = Form(default="main", max_length=300),
    source_dir: str = Form(default="", max_length=600),
    csrf: str = Form(default="", max_length=200),
) -> Response:
    """Create the app, then show its webhook URL and secret (this once) with
    the steps in GitHub's settings; the page turns green at the first ping."""
    user = signed_in(request)
    values = {"name": name, "repo_url": repo_url, "branch": branch, "source_dir": source_dir}
    if not check_csrf(request, csrf):
        return render(request, "new_app.html", 403, values=values, errors={"form": STALE_FORM})
    try:
        spec = AppCreate(name=name.strip(), repo_url=repo_url, branch=branch, source_dir=source_dir)
        app, secret = services.create_app(
            session, spec=spec, actor=f"user:{user}", keyring=keyring, settings=settings
        )
    except ValidationError as exc:
        errors = field_errors(exc)
        return render(request, "new_app.html", 422, values=values, errors=errors)
    except Conflict as exc:
        return render(request, "new_app.html", 409, values=values, errors={"name": str(exc)})
    except InvalidInput as exc:
        message = str(exc).removeprefix("repo_url: ")
        return render(request, "new_app.html", 422, values=values, errors={"repo_url": message})
    return render(
        request,
        "webhook.html",
        201,
        app=app.name,
        webhook_url=services.webhook_url(session, settings, app),
        secret=secret,
        received=False,
    )


def app_row(session: Session, app: App, settings: Any) -> dict[str, Any]:
    public = services.app_public(session, app=app, settings=settings)
    latest = session.exec(
        select(Deployment).where(Deployment.app_id == app.id).order_by(col(Deployment.version).desc())
    ).first()
    busy = session.exec(
        select(Job.id).where(
            col(Job.app_id) == app.id, col(Job.state).in_([JobState.queued, JobState.running])
        )
    ).first()
    if app.state != "active":
        status = "deleting"
    elif busy is not None:
        status = "deploying"
    elif app.pinned:
        status = "pinned"
    elif latest is not None and latest.status == DeploymentStatus.failed:
        status = "failed"
    elif public.current_version:
        status = "live"
    else:
        status = "new"
    return {
        "name": app.name,
        "branch": app.branch,
        "status": status,
        "url": public.url,
        "version": public.current_version,
        "commit": (public.current_commit or "")[:12],
        "deployed_at": latest.finished_at if latest is not None else None,
        "pending_pushes": app.pending_pushes,
    }


ERROR_TITLES = {403: "Not allowed", 404: "Not found", 409: "Not now", 422: "Not valid", 500: "Server error"}


def error_page(request: Request, status_code: int, detail: str) -> HTMLResponse:
    title = ERROR_TITLES.get(status_code, "Something is wrong")
    if "session" not in request.scope:
        return HTMLResponse(f"<!doctype html><title>{status_code}</title><p>{title}", status_code=status_code)
    return render(request, "error.html", status_code, code=status_code, title=title, detail=detail)


def login_redirect(request: Request, exc: NotSignedIn) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(exc.next_path)}", status_code=303)
