"""The ``paas`` command line.

Server commands (``up``, ``web``, ``agent``, ``migrate``, ``admin``) run on
the server itself; client commands talk to the REST API with the login saved
by ``paas login``. Expected failures print one line and exit non-zero.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from paas.client import ApiClient, ClientError, save_login
from paas.errors import PaasError
from paas.settings import Settings, load_settings

app = typer.Typer(
    help="paas: push to GitHub, get a zero-downtime release.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
apps_app = typer.Typer(help="Create, list, inspect and delete apps.", no_args_is_help=True)
admin_app = typer.Typer(help="Server-side administration (run on the server).", no_args_is_help=True)
app.add_typer(apps_app, name="apps")
app.add_typer(admin_app, name="admin")

out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def main() -> None:
    try:
        app()
    except PaasError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the width
        typer.echo(f"error: {message}", err=True)
        sys.exit(1)


def _fail(message: str) -> None:
    raise PaasError(message)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


# server side --------------------------------------------------------------------


def _setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("PAAS_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def migrate() -> None:
    """Apply pending database migrations."""
    from paas.instance import instance_id

    instance_id(_prepare().data_dir)
    typer.echo("database is up to date")


def run_web(settings: Settings) -> None:
    import uvicorn

    from web.app import create_app

    _drop_privileges(settings.web_user)
    _setup_logging()
    uvicorn.run(
        create_app(settings),
        host=settings.web_host,
        port=settings.web_port,
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        log_level="info",
    )


def run_agent(settings: Settings) -> None:
    from agent.daemon import Agent

    _setup_logging()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    Agent(settings).run(stop)


def _drop_privileges(user: str) -> None:
    """As root, run the web process as ``user``: it never needs root."""
    if not user or os.geteuid() != 0:
        return
    import pwd

    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def _prepare() -> Settings:
    from paas.db import migrate as run_migrations

    settings = load_settings()
    os.umask(0o007)  # the web user's group shares the database
    run_migrations(settings)
    return settings


@app.command()
def web() -> None:
    """Run the control plane (API, webhooks, UI) in the foreground."""
    run_web(_prepare())


@app.command()
def agent() -> None:
    """Run the deploy agent in the foreground."""
    run_agent(_prepare())


@app.command()
def up() -> None:
    """Run web and agent together in the foreground (Ctrl-C stops both)."""
    settings = _prepare()
    ctx = multiprocessing.get_context("spawn")
    children = {
        "web": ctx.Process(target=run_web, args=(settings,), name="paas-web"),
        "agent": ctx.Process(target=run_agent, args=(settings,), name="paas-agent"),
    }
    for child in children.values():
        child.start()
    typer.echo(
        f"paas is up: control plane on http://{settings.web_host}:{settings.web_port}, "
        f"apps at http://<app>.{settings.domain}:{settings.http_port}"
    )
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    while not stopping.is_set() and all(c.is_alive() for c in children.values()):
        stopping.wait(0.5)
    for child in children.values():
        if child.is_alive():
            child.terminate()
    for child in children.values():
        child.join(timeout=60)
    dead = [n for n, c in children.items() if c.exitcode not in (0, -signal.SIGTERM)]
    if dead and not stopping.is_set():
        _fail(f"{', '.join(dead)} stopped unexpectedly")


@admin_app.command("create-token")
def create_token(
    name: Annotated[str, typer.Argument(help="A name to recognise the token by.")],
    if_none: Annotated[
        bool, typer.Option("--if-none", help="Only if no token exists yet (for install scripts).")
    ] = False,
) -> None:
    """Create an API token and print it alone on stdout."""
    from sqlmodel import select

    from paas import services
    from paas.db import make_engine, session_scope
    from paas.models import ApiToken

    settings = _prepare()
    with session_scope(make_engine(settings)) as session:
        if if_none and session.exec(select(ApiToken)).first() is not None:
            return
        token = services.create_token(session, name=name)
    typer.echo(token)


# client side --------------------------------------------------------------------


@app.command()
def login(
    url: Annotated[str, typer.Argument(help="The control plane, e.g. https://paas.example.com")],
    token: Annotated[str, typer.Option(help="An API token from `paas admin create-token`.")],
) -> None:
    """Save the server URL and token, after checking them."""
    if not url.startswith(("http://", "https://")):
        _fail("URL must start with http:// or https://")
    ApiClient(url.rstrip("/"), token).request("GET", "/apps")
    path = save_login(url, token)
    typer.echo(f"logged in to {url} (saved in {path})")


def _client() -> ApiClient:
    return ApiClient.from_login()


@apps_app.command("create")
def apps_create(
    name: str,
    repo: Annotated[str, typer.Option(help="Git URL: https, ssh, or a local path.")],
    branch: Annotated[str, typer.Option(help="Branch whose pushes deploy.")] = "main",
    source_dir: Annotated[str, typer.Option(help="Build context inside the repository.")] = "",
    dockerfile: Annotated[str, typer.Option(help="Dockerfile path inside the build context.")] = "Dockerfile",
    port: Annotated[int | None, typer.Option(help="Port the app listens on ($PORT).")] = None,
    health_path: Annotated[
        str | None, typer.Option(help="HTTP path for health checks (default: TCP).")
    ] = None,
    data_path: Annotated[
        str | None, typer.Option(help="Mount a persistent volume here, shared by releases.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an app; prints its webhook URL and secret for GitHub."""
    body = {
        "name": name,
        "repo_url": repo,
        "branch": branch,
        "source_dir": source_dir,
        "dockerfile": dockerfile,
        "port": port,
        "health_path": health_path,
        "data_path": data_path,
    }
    created = _client().request("POST", "/apps", json=body)
    if as_json:
        _print_json(created)
        return
    out.print(f"created [bold]{created['name']}[/bold], served at {created['url']}")
    out.print("In GitHub: Settings → Webhooks → Add webhook, with")
    out.print(f"  Payload URL:  {created['webhook_url']}", markup=False)
    out.print("  Content type: application/json")
    out.print(f"  Secret:       {created['webhook_secret']}", markup=False)
    out.print("  Events:       just the push event")
    out.print("The secret is shown only now.")


@apps_app.command("list")
def apps_list(as_json: JsonOpt = False) -> None:
    """List apps."""
    apps = _client().request("GET", "/apps")
    if as_json:
        _print_json(apps)
        return
    table = Table("name", "state", "version", "commit", "branch", "url")
    for a in apps:
        version = f"v{a['current_version']}" if a["current_version"] else "-"
        table.add_row(
            a["name"], a["state"], version, (a["current_commit"] or "-")[:12], a["branch"], a["url"]
        )
    out.print(table)


@apps_app.command("info")
def apps_info(name: str, as_json: JsonOpt = False) -> None:
    """Show one app."""
    info = _client().request("GET", f"/apps/{name}")
    if as_json:
        _print_json(info)
        return
    for key in (
        "name",
        "state",
        "url",
        "repo_url",
        "branch",
        "source_dir",
        "dockerfile",
        "port",
        "health_path",
        "current_version",
        "current_commit",
        "webhook_url",
        "created_at",
    ):
        out.print(f"{key:16} {info.get(key) if info.get(key) not in (None, '') else '-'}", markup=False)


@apps_app.command("delete")
def apps_delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete an app: its containers, nginx site, images and history."""
    if not yes:
        if not sys.stdin.isatty():
            _fail("refusing to delete without confirmation: pass --yes")
        typer.confirm(f"Delete {name}, its containers, images and history?", abort=True)
    job = _client().request("DELETE", f"/apps/{name}")
    if as_json:
        _print_json(job)
    else:
        typer.echo(f"deleting {name} (job {job['id']})")


@app.command()
def deploy(
    name: str,
    ref: Annotated[str | None, typer.Option(help="Branch to deploy (default: the app's).")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the deploy to finish.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Deploy the head of the app's branch."""
    client = _client()
    job = client.request("POST", f"/apps/{name}/deploy", json={"ref": ref})
    if wait:
        job = _wait_for_job(client, job["id"], lambda j: err.print(f"  {j['state']}…", highlight=False))
    if as_json:
        _print_json(job)
        return
    if not wait:
        typer.echo(f"deploy queued (job {job['id']})")
    elif job["state"] == "done":
        typer.echo(f"{name} v{job['version']} is live")
    else:
        _fail(f"deploy {job['state']}: {job['error']}")


def _wait_for_job(
    client: ApiClient, job_id: int, on_change: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    last = ""
    while True:
        job: dict[str, Any] = client.request("GET", f"/jobs/{job_id}")
        if job["state"] != last:
            last = job["state"]
            on_change(job)
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(1)


@app.command()
def releases(name: str, as_json: JsonOpt = False) -> None:
    """List an app's releases, newest first."""
    rows = _client().request("GET", f"/apps/{name}/releases")
    if as_json:
        _print_json(rows)
        return
    table = Table("version", "status", "commit", "message", "trigger", "by", "created", "duration")
    for r in rows:
        duration = f"{r['duration']:.1f}s" if r["duration"] is not None else "-"
        table.add_row(
            f"v{r['version']}",
            r["status"],
            r["commit"][:12],
            (r["commit_message"].splitlines() or [""])[0][:50],
            r["trigger"],
            r["created_by"],
            str(r["created_at"])[:19],
            duration,
        )
    out.print(table)


__all__ = ["app", "main", "ClientError"]
