"""Client commands: they talk to the REST API over HTTP with the login
saved by ``paas login`` (paas/cli/http.py), and never touch the server's
files, database or daemons.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from paas.cli.common import (
    JsonOpt,
    app,
    apps_app,
    confirm,
    err,
    fail,
    out,
    print_json,
)
from paas.cli.http import ApiClient, https_twin, is_loopback_url, save_login

if TYPE_CHECKING:
    from pydantic import BaseModel


@app.command()
def login(
    url: Annotated[str, typer.Argument(help="The control plane, e.g. https://paas.example.com")],
    token: Annotated[str, typer.Option(help="An API token from `paas admin create-token`.")],
    insecure: Annotated[
        bool, typer.Option(help="Allow the token over plain HTTP to another machine (it travels in clear).")
    ] = False,
) -> None:
    """Save the server URL and token, after checking them (https:// if an http:// server answers HTTPS)."""
    if not url.startswith(("http://", "https://")):
        fail("URL must start with http:// or https://")
    url = url.rstrip("/")
    if url.startswith("http://") and not is_loopback_url(url):
        twin = https_twin(url)
        if twin is not None:
            typer.echo(f"{url} answers over HTTPS: using {twin}")
            url = twin
    insecure = insecure and url.startswith("http://")
    ApiClient(url, token, insecure=insecure).request("GET", "/apps")
    path = save_login(url, token, insecure=insecure)
    typer.echo(f"logged in to {url} (saved in {path})")


def api_client() -> ApiClient:
    return ApiClient.from_login()


# One line per app setting, shared by `apps create` and `apps set`; the options are the
# fields of schemas.AppCreate and AppUpdate (--repo is repo_url), and _app_fields maps them.
HELP = {
    "repo": "Git URL: https, ssh, or a local path.",
    "branch": "Branch whose pushes deploy.",
    "source_dir": "Build context inside the repository.",
    "dockerfile": "Dockerfile path inside the build context.",
    "port": "Port the app listens on ($PORT).",
    "run_command": (
        "The web command (sh -c); default: the Procfile's web:, else the image's CMD or a detected app."
    ),
    "release_command": (
        "Run once per deploy before the new version starts (sh -c), e.g. 'sh scripts/prestart.sh'; "
        "default: the Procfile's release:, else a prestart.sh in the image."
    ),
    "base_image": "What a build without a Dockerfile starts FROM; default: the server's PAAS_BASE_IMAGE.",
    "build_target": "The Dockerfile stage to build (docker build --target); default: the last.",
    "memory": "Memory per container, e.g. 256m; default: the server's PAAS_APP_MEMORY.",
    "cpus": "CPUs per container, e.g. 0.5; default: the server's PAAS_APP_CPUS.",
    "pids": "Processes per container; default: the server's PAAS_APP_PIDS.",
}


def _app_fields(schema: type[BaseModel], given: dict[str, Any]) -> dict[str, Any]:
    """The options given (None: not given), named as ``schema`` names its fields."""
    named = {("repo_url" if k == "repo" else k): v for k, v in given.items()}
    return {k: v for k, v in named.items() if k in schema.model_fields and v is not None}


@apps_app.command("create")
def apps_create(
    name: str,
    repo: Annotated[str, typer.Option(help=HELP["repo"])],
    branch: Annotated[str, typer.Option(help=HELP["branch"])] = "main",
    source_dir: Annotated[str, typer.Option(help=HELP["source_dir"])] = "",
    dockerfile: Annotated[str, typer.Option(help=HELP["dockerfile"])] = "Dockerfile",
    port: Annotated[int | None, typer.Option(help=HELP["port"])] = None,
    health_path: Annotated[
        str | None, typer.Option(help="HTTP path for health checks (default: TCP).")
    ] = None,
    data_path: Annotated[
        str | None, typer.Option(help="Mount a persistent volume here, shared by releases.")
    ] = None,
    run_command: Annotated[str, typer.Option(help=HELP["run_command"])] = "",
    # None: not sent, so this client still creates apps on a server from before the setting
    release_command: Annotated[str | None, typer.Option(help=HELP["release_command"])] = None,
    build_target: Annotated[str | None, typer.Option(help=HELP["build_target"])] = None,
    base_image: Annotated[str, typer.Option(help=HELP["base_image"])] = "",
    memory: Annotated[str, typer.Option(help=HELP["memory"])] = "",
    cpus: Annotated[float | None, typer.Option(help=HELP["cpus"])] = None,
    pids: Annotated[int | None, typer.Option(help=HELP["pids"])] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an app; prints its webhook URL and secret for GitHub."""
    from paas.schemas import AppCreate  # loads the database models: only when asked

    body = _app_fields(AppCreate, locals())
    created = api_client().request("POST", "/apps", json=body)
    if as_json:
        print_json(created)
        return
    out.print(f"created [bold]{created['name']}[/bold], served at {created['url']}")
    out.print("In GitHub: Settings → Webhooks → Add webhook, with")
    out.print(f"  Payload URL:  {created['webhook_url']}", markup=False)
    out.print("  Content type: application/json")
    out.print(f"  Secret:       {created['webhook_secret']}", markup=False)
    out.print("  Events:       just the push event")
    out.print("The secret is shown only now.")


@apps_app.command("rotate-secret")
def apps_rotate_secret(name: str, as_json: JsonOpt = False) -> None:
    """Replace the app's webhook secret; prints the new one, this once."""
    rotated = api_client().request("POST", f"/apps/{name}/webhook-secret")
    if as_json:
        print_json({k: rotated[k] for k in ("name", "webhook_url", "webhook_secret")})
        return
    out.print(f"new webhook secret for [bold]{rotated['name']}[/bold] (shown only now):")
    out.print(f"  Secret:       {rotated['webhook_secret']}", markup=False)
    out.print("In GitHub: Settings → Webhooks → Edit, paste it as the Secret, and check")
    out.print(f"  Payload URL:  {rotated['webhook_url']}", markup=False)
    out.print("Deliveries signed with the old secret are refused from now on.")


@apps_app.command("set")
def apps_set(
    name: str,
    repo: Annotated[str | None, typer.Option(help=HELP["repo"])] = None,
    branch: Annotated[str | None, typer.Option(help=HELP["branch"])] = None,
    source_dir: Annotated[str | None, typer.Option(help=HELP["source_dir"])] = None,
    dockerfile: Annotated[str | None, typer.Option(help=HELP["dockerfile"])] = None,
    port: Annotated[int | None, typer.Option(help=HELP["port"])] = None,
    health_path: Annotated[str | None, typer.Option(help="HTTP path for health checks; '' for TCP.")] = None,
    data_path: Annotated[
        str | None, typer.Option(help="Mount a persistent volume here; '' for none.")
    ] = None,
    run_command: Annotated[str | None, typer.Option(help=HELP["run_command"] + " '' clears it.")] = None,
    release_command: Annotated[
        str | None, typer.Option(help=HELP["release_command"] + " '' clears it.")
    ] = None,
    build_target: Annotated[str | None, typer.Option(help=HELP["build_target"] + " '' clears it.")] = None,
    base_image: Annotated[str | None, typer.Option(help=HELP["base_image"] + " '' clears it.")] = None,
    hsts: Annotated[
        bool | None,
        typer.Option("--hsts/--no-hsts", help="Strict-Transport-Security on HTTPS (browsers remember it)."),
    ] = None,
    memory: Annotated[str | None, typer.Option(help=HELP["memory"] + " '' clears it.")] = None,
    cpus: Annotated[float | None, typer.Option(help=HELP["cpus"] + " 0 clears it.")] = None,
    pids: Annotated[int | None, typer.Option(help=HELP["pids"] + " 0 clears it.")] = None,
    github_token: Annotated[
        bool,
        typer.Option(
            "--github-token",
            help="Report deploys to GitHub with a token read from a hidden prompt (or stdin): fine-grained, "
            "with Commit statuses and Deployments, read and write.",
        ),
    ] = False,
    no_github_token: Annotated[
        bool, typer.Option("--no-github-token", help="Remove the GitHub token: stop reporting.")
    ] = False,
    github_repo: Annotated[
        str | None, typer.Option(help="owner/name statuses go to; '' takes it from --repo.")
    ] = None,
    github_environment: Annotated[
        str | None, typer.Option(help="The GitHub environment of its deployments (default production).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change an app's settings; they apply from the next deploy (HSTS at the next certificate check)."""
    from paas.cli.notify import set_github
    from paas.schemas import AppUpdate

    body = _app_fields(AppUpdate, locals())
    for key in ("cpus", "pids"):
        if key in body:
            body[key] = body[key] or None  # 0: back to the server's default
    github = github_token or no_github_token or github_repo is not None or github_environment is not None
    if not body and not github:
        fail("nothing to change: give at least one option (see `paas apps set --help`)")
    info = api_client().request("PATCH", f"/apps/{name}", json=body) if body else {}
    if github:
        info["github"] = set_github(
            name, token=github_token, remove=no_github_token, repo=github_repo, environment=github_environment
        )
    if as_json:
        print_json(info)
        return
    if body:
        typer.echo(f"{name}: changed {', '.join(sorted(body))}; they apply from the next deploy")
    if github:
        gh = info["github"]
        told = (
            f"reports to GitHub {gh['repo']} ({gh['environment']})" if gh["token_set"] else "no GitHub token"
        )
        typer.echo(f"{name}: {told}")


@apps_app.command("list")
def apps_list(as_json: JsonOpt = False) -> None:
    """List apps."""
    apps = api_client().request("GET", "/apps")
    if as_json:
        print_json(apps)
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
    info = api_client().request("GET", f"/apps/{name}")
    if as_json:
        print_json(info)
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
        "env_staged",
        "webhook_url",
        "created_at",
    ):
        out.print(f"{key:16} {info.get(key) if info.get(key) not in (None, '') else '-'}", markup=False)
    gh = api_client().request("GET", f"/apps/{name}/github")
    told = f"{gh['repo'] or '(no repository)'} ({gh['environment']})" if gh["token_set"] else "off (no token)"
    out.print(f"{'github':16} {told}", markup=False)
    if gh["last_outcome"]:
        out.print(f"{'github last':16} {gh['last_outcome']}", markup=False)


@apps_app.command("delete")
def apps_delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete an app: its containers, nginx site, images and history."""
    confirm(yes, "delete", f"Delete {name}, its containers, images and history?")
    job = api_client().request("DELETE", f"/apps/{name}")
    if as_json:
        print_json(job)
    else:
        typer.echo(f"deleting {name} (job {job['id']})")


@app.command()
def deploy(
    name: str,
    ref: Annotated[str | None, typer.Option(help="Branch to deploy (default: the app's).")] = None,
    commit: Annotated[str | None, typer.Option(help="A commit id to deploy instead of the head.")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the deploy to finish.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Deploy the head of the app's branch (this also unpins a pinned app)."""
    client = api_client()
    job = client.request("POST", f"/apps/{name}/deploy", json={"ref": ref, "commit": commit})
    finish_release(client, name, job, wait=wait, as_json=as_json, what="deploy")


QuickWait = Annotated[bool, typer.Option(help="Wait until the new release is live (no build: seconds).")]


def finish_release(
    client: ApiClient, name: str, job: dict[str, Any], *, wait: bool, as_json: bool, what: str
) -> None:
    if wait:
        job = follow_job(client, name, job["id"], show_log=not as_json)
    if as_json:
        print_json(job)
    elif not wait:
        typer.echo(f"{what} queued (job {job['id']})")
    elif job["state"] == "done" or job.get("live"):
        typer.echo(f"{name} v{job['version']} is live")
    else:
        fail(f"{what} {job['state']}: {job['error']}")


def release_version(text: str, *, option: str = "--to") -> int:
    digits = text.removeprefix("v")
    if not digits.isdigit() or int(digits) < 1:
        fail(f"{option} takes a version such as v3, not {text!r}")
    return int(digits)


@app.command()
def rollback(
    name: str,
    to: Annotated[
        str | None, typer.Option("--to", help="The version to bring back, e.g. v3 (default: the previous).")
    ] = None,
    run_release: Annotated[bool, typer.Option(help="Run the release command (migrations) again.")] = False,
    wait: QuickWait = True,
    as_json: JsonOpt = False,
) -> None:
    """Bring back an earlier release, code and env, as a new release; pins the app."""
    client = api_client()
    body = {"to": release_version(to) if to else None, "run_release": run_release}
    result = client.request("POST", f"/apps/{name}/rollback", json=body)
    for warning in result["warnings"]:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    if not as_json:
        typer.echo(f"rolling {name} back to v{result['target_version']} (its image and env, no build)")
    finish_release(client, name, result["job"], wait=wait, as_json=as_json, what="rollback")
    if not as_json:
        typer.echo(
            f"{name} is pinned: pushes are recorded, not deployed, until "
            f"`paas unpin {name}` or `paas deploy {name}`"
        )


@app.command()
def unpin(name: str, as_json: JsonOpt = False) -> None:
    """Let pushes deploy again after a rollback."""
    client = api_client()
    before = client.request("GET", f"/apps/{name}")
    info = client.request("POST", f"/apps/{name}/unpin")
    if as_json:
        print_json(info)
        return
    waiting = before["pending_pushes"]
    latest = f" (latest {before['pending_commit'][:12]})" if before["pending_commit"] else ""
    typer.echo(f"{name} unpinned; {waiting} push(es) were waiting{latest}")
    if waiting:
        typer.echo(f"the next push deploys; `paas deploy {name}` deploys the branch head now")


@app.command()
def restart(name: str, wait: QuickWait = True, as_json: JsonOpt = False) -> None:
    """Replace the live release's containers, with no downtime (same image, same env)."""
    client = api_client()
    job = client.request("POST", f"/apps/{name}/restart")
    finish_release(client, name, job, wait=wait, as_json=as_json, what="restart")


@app.command()
def cancel(name: str, as_json: JsonOpt = False) -> None:
    """Cancel the app's running or queued deploy; the live release keeps serving."""
    job = api_client().request("POST", f"/apps/{name}/cancel")
    if as_json:
        print_json(job)
    elif job["state"] == "cancelled":
        typer.echo(f"cancelled queued job {job['id']} ({job['kind']})")
    else:
        version = f" v{job['version']}" if job["version"] else ""
        typer.echo(f"cancelling job {job['id']} ({job['kind']}{version}); the live release keeps serving")


def follow_job(client: ApiClient, name: str, job_id: int, *, show_log: bool) -> dict[str, Any]:
    """Wait for a job; once it has a release, stream that release's log (its
    steps and the build output) to stderr as it is written."""
    if not show_log:
        return wait_for_job(client, job_id, lambda _j: None)
    job: dict[str, Any] = client.request("GET", f"/jobs/{job_id}")
    while not job["version"] and job["state"] in ACTIVE:
        # the release is made when the agent claims the job: its state moves on
        job = wait_for_change(client, job_id, job["state"])
    if job["version"]:
        for chunk in client.stream(f"/apps/{name}/releases/{job['version']}/log", follow="true"):
            sys.stderr.write(chunk)
            sys.stderr.flush()
    return wait_for_job(client, job_id, lambda _j: None)


def wait_for_job(
    client: ApiClient, job_id: int, on_change: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Until the job's release is live (the old one may still be retiring,
    off the path to live) or the job has ended."""
    job: dict[str, Any] = client.request("GET", f"/jobs/{job_id}")
    on_change(job)
    while job["state"] in ACTIVE and not job.get("live"):
        # the server answers as soon as the state moves on (or after JOB_WAIT s)
        last = job["state"]
        job = wait_for_change(client, job_id, last)
        if job["state"] != last:
            on_change(job)
    return job


def wait_for_change(client: ApiClient, job_id: int, seen: str) -> dict[str, Any]:
    """The job once its state is no longer ``seen`` (or it is live, or
    JOB_WAIT seconds passed): the server holds the request until then."""
    answer: dict[str, Any] = client.request(
        "GET", f"/jobs/{job_id}", params={"wait": JOB_WAIT, "seen": seen}, timeout=JOB_WAIT + 30
    )
    return answer


ACTIVE = ("queued", "running")
JOB_WAIT = 20  # seconds a request waits for the job to move on (the server allows up to 30)
