"""Client commands: they talk to the REST API over HTTP with the login
saved by ``paas login`` (paas/cli/http.py), and never touch the server's
files, database or daemons.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.table import Table

from paas.cli.common import (
    JsonOpt,
    app,
    apps_app,
    confirm,
    domains_app,
    env_app,
    err,
    fail,
    out,
    print_json,
)
from paas.cli.http import ApiClient, https_twin, is_loopback_url, save_login
from paas.schemas import AppCreate, AppUpdate
from paas.scopes import EnvScope


@app.command()
def login(
    url: Annotated[str, typer.Argument(help="The control plane, e.g. https://paas.example.com")],
    token: Annotated[str, typer.Option(help="An API token from `paas admin create-token`.")],
    insecure: Annotated[
        bool, typer.Option(help="Allow the token over plain HTTP to another machine (it travels in clear).")
    ] = False,
) -> None:
    """Save the server URL and token, after checking them. An http:// URL whose
    server also answers over HTTPS (with a valid certificate) is saved as https://."""
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


def _client() -> ApiClient:
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
    "base_image": "What a build without a Dockerfile starts FROM; default: the server's PAAS_BASE_IMAGE.",
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
    base_image: Annotated[str, typer.Option(help=HELP["base_image"])] = "",
    memory: Annotated[str, typer.Option(help=HELP["memory"])] = "",
    cpus: Annotated[float | None, typer.Option(help=HELP["cpus"])] = None,
    pids: Annotated[int | None, typer.Option(help=HELP["pids"])] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an app; prints its webhook URL and secret for GitHub."""
    body = _app_fields(AppCreate, locals())
    created = _client().request("POST", "/apps", json=body)
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
    rotated = _client().request("POST", f"/apps/{name}/webhook-secret")
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
    base_image: Annotated[str | None, typer.Option(help=HELP["base_image"] + " '' clears it.")] = None,
    hsts: Annotated[
        bool | None,
        typer.Option("--hsts/--no-hsts", help="Strict-Transport-Security on HTTPS (browsers remember it)."),
    ] = None,
    memory: Annotated[str | None, typer.Option(help=HELP["memory"] + " '' clears it.")] = None,
    cpus: Annotated[float | None, typer.Option(help=HELP["cpus"] + " 0 clears it.")] = None,
    pids: Annotated[int | None, typer.Option(help=HELP["pids"] + " 0 clears it.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change an app's settings; they apply from the next deploy (HSTS at the next certificate check)."""
    body = _app_fields(AppUpdate, locals())
    for key in ("cpus", "pids"):
        if key in body:
            body[key] = body[key] or None  # 0: back to the server's default
    if not body:
        fail("nothing to change: give at least one option (see `paas apps set --help`)")
    info = _client().request("PATCH", f"/apps/{name}", json=body)
    if as_json:
        print_json(info)
        return
    typer.echo(f"{name}: changed {', '.join(sorted(body))}; they apply from the next deploy")


@apps_app.command("list")
def apps_list(as_json: JsonOpt = False) -> None:
    """List apps."""
    apps = _client().request("GET", "/apps")
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
    info = _client().request("GET", f"/apps/{name}")
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


@apps_app.command("delete")
def apps_delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete an app: its containers, nginx site, images and history."""
    confirm(yes, "delete", f"Delete {name}, its containers, images and history?")
    job = _client().request("DELETE", f"/apps/{name}")
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
    client = _client()
    job = client.request("POST", f"/apps/{name}/deploy", json={"ref": ref, "commit": commit})
    _finish_release(client, name, job, wait=wait, as_json=as_json, what="deploy")


QuickWait = Annotated[bool, typer.Option(help="Wait until the new release is live (no build: seconds).")]


def _finish_release(
    client: ApiClient, name: str, job: dict[str, Any], *, wait: bool, as_json: bool, what: str
) -> None:
    if wait:
        job = _follow_job(client, name, job["id"], show_log=not as_json)
    if as_json:
        print_json(job)
    elif not wait:
        typer.echo(f"{what} queued (job {job['id']})")
    elif job["state"] == "done":
        typer.echo(f"{name} v{job['version']} is live")
    else:
        fail(f"{what} {job['state']}: {job['error']}")


def _version(text: str, *, option: str = "--to") -> int:
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
    client = _client()
    body = {"to": _version(to) if to else None, "run_release": run_release}
    result = client.request("POST", f"/apps/{name}/rollback", json=body)
    for warning in result["warnings"]:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    if not as_json:
        typer.echo(f"rolling {name} back to v{result['target_version']} (its image and env, no build)")
    _finish_release(client, name, result["job"], wait=wait, as_json=as_json, what="rollback")
    if not as_json:
        typer.echo(
            f"{name} is pinned: pushes are recorded, not deployed, until "
            f"`paas unpin {name}` or `paas deploy {name}`"
        )


@app.command()
def unpin(name: str, as_json: JsonOpt = False) -> None:
    """Let pushes deploy again after a rollback."""
    client = _client()
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
    client = _client()
    job = client.request("POST", f"/apps/{name}/restart")
    _finish_release(client, name, job, wait=wait, as_json=as_json, what="restart")


@app.command()
def cancel(name: str, as_json: JsonOpt = False) -> None:
    """Cancel the app's running or queued deploy; the live release keeps serving."""
    job = _client().request("POST", f"/apps/{name}/cancel")
    if as_json:
        print_json(job)
    elif job["state"] == "cancelled":
        typer.echo(f"cancelled queued job {job['id']} ({job['kind']})")
    else:
        version = f" v{job['version']}" if job["version"] else ""
        typer.echo(f"cancelling job {job['id']} ({job['kind']}{version}); the live release keeps serving")


def _follow_job(client: ApiClient, name: str, job_id: int, *, show_log: bool) -> dict[str, Any]:
    """Wait for a job; once it has a release, stream that release's log (its
    steps and the build output) to stderr as it is written."""
    if not show_log:
        return _wait_for_job(client, job_id, lambda _j: None)
    while True:
        job: dict[str, Any] = client.request("GET", f"/jobs/{job_id}")
        if job["version"] or job["state"] not in ("queued", "running"):
            break
        time.sleep(0.5)
    if job["version"]:
        for chunk in client.stream(f"/apps/{name}/releases/{job['version']}/log", follow="true"):
            sys.stderr.write(chunk)
            sys.stderr.flush()
    return _wait_for_job(client, job_id, lambda _j: None)


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


# env vars ---------------------------------------------------------------------------

SecretOpt = Annotated[
    bool | None,
    typer.Option(
        "--secret/--no-secret",
        help="Secret values are sealed to the agent's key: write-only, shown masked. "
        "Left out, an existing variable keeps what it is (a new one is general).",
    ),
]
ScopeOpt = Annotated[
    EnvScope | None,
    typer.Option(
        help="run: the containers' environment; build: build args (visible in the image's "
        "history); both. Left out, an existing variable keeps its scope (a new one: run)."
    ),
]
NoRestartOpt = Annotated[
    bool, typer.Option("--no-restart", help="Stage the change for the next deploy instead of releasing now.")
]
WaitOpt = Annotated[bool, typer.Option(help="Wait until the new release is live.")]


def _parse_pairs(pairs: list[str]) -> list[tuple[str, str]]:
    """K=V pairs; a bare K reads its value from stdin (piped) or a hidden
    prompt, so a secret need not appear in the shell history or `ps`."""
    parsed: list[tuple[str, str]] = []
    bare = [p for p in pairs if "=" not in p]
    if len(bare) > 1 and not sys.stdin.isatty():
        fail("only one KEY without =VALUE can read its value from stdin")
    for index, pair in enumerate(pairs, start=1):
        key, sep, value = pair.partition("=")
        if not key:
            fail(f"argument {index} has no name before '='")
        if not sep:
            if sys.stdin.isatty():
                value = typer.prompt(f"value of {key}", hide_input=True)
            else:
                value = sys.stdin.read().removesuffix("\n")
        parsed.append((key, value))
    return parsed


def _report_change(
    client: ApiClient, result: dict[str, Any], *, restart: bool, wait: bool, as_json: bool
) -> None:
    for warning in result["warnings"]:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    job = result["job"]
    if wait and job:
        job = _wait_for_job(client, job["id"], lambda j: err.print(f"  {j['state']}…", highlight=False))
        result = {**result, "job": job}
    if as_json:
        print_json(result)
        return
    done = []
    if result["changed"]:
        done.append("set " + ", ".join(result["changed"]))
    if result["removed"]:
        done.append("unset " + ", ".join(result["removed"]))
    typer.echo(f"{result['app']}: {'; '.join(done)}")
    if job is None:
        typer.echo(
            "staged: applies at the next deploy"
            if not restart
            else "no live release yet: applies at the first deploy"
        )
    elif job["state"] in ("queued", "running"):
        typer.echo(f"rolling out a new release with this env (job {job['id']}); no rebuild")
    elif job["state"] == "done":
        typer.echo(f"{result['app']} v{job['version']} is live with this env")
    else:
        fail(f"release {job['state']}: {job['error']}")


@env_app.command("list")
def env_list(name: str, as_json: JsonOpt = False) -> None:
    """List an app's env vars; secret values show masked."""
    rows = _client().request("GET", f"/apps/{name}/env")
    if as_json:
        print_json(rows)
        return
    table = Table("key", "value", "scope", "updated", "by")
    for r in rows:
        value = "•••••••• (secret)" if r["secret"] else r["value"]
        table.add_row(r["key"], value, r["scope"], str(r["updated_at"])[:19], r["updated_by"])
    out.print(table)


@env_app.command("set")
def env_set(
    name: str,
    pairs: Annotated[list[str], typer.Argument(help="KEY=VALUE ...; a bare KEY reads its value from stdin.")],
    secret: SecretOpt = None,
    scope: ScopeOpt = None,
    no_restart: NoRestartOpt = False,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Set env vars, all in one change (one new release, no rebuild)."""
    body = {
        "set": [{"key": k, "value": v, "secret": secret, "scope": scope} for k, v in _parse_pairs(pairs)],
        "restart": not no_restart,
    }
    client = _client()
    result = client.request("PATCH", f"/apps/{name}/env", json=body)
    _report_change(client, result, restart=not no_restart, wait=wait, as_json=as_json)


@env_app.command("unset")
def env_unset(
    name: str,
    keys: Annotated[list[str], typer.Argument(help="Names to remove.")],
    no_restart: NoRestartOpt = False,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove env vars, all in one change."""
    client = _client()
    result = client.request("PATCH", f"/apps/{name}/env", json={"unset": keys, "restart": not no_restart})
    _report_change(client, result, restart=not no_restart, wait=wait, as_json=as_json)


@env_app.command("import")
def env_import(
    name: str,
    file: Annotated[str, typer.Argument(help="A .env file, or - for stdin.")],
    secret: SecretOpt = None,
    scope: ScopeOpt = None,
    no_restart: NoRestartOpt = False,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Set every variable of a .env file, in one change (checked whole first)."""
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {getattr(exc, 'strerror', None) or type(exc).__name__}")
    body = {"dotenv": text, "secret": secret, "scope": scope, "restart": not no_restart}
    client = _client()
    result = client.request("POST", f"/apps/{name}/env/import", json=body)
    _report_change(client, result, restart=not no_restart, wait=wait, as_json=as_json)


@env_app.command("export")
def env_export(name: str) -> None:
    """Print the app's env as a .env file (secrets masked, commented out)."""
    typer.echo(_client().request("GET", f"/apps/{name}/env/export"), nl=False)


@app.command()
def scale(
    name: str,
    processes: Annotated[
        list[str] | None, typer.Argument(help="TYPE=COUNT pairs, e.g. web=2 worker=1; none: show the counts.")
    ] = None,
    wait: QuickWait = True,
    as_json: JsonOpt = False,
) -> None:
    """Containers per process type (kept across deploys); changes roll out at once, with no downtime."""
    client = _client()
    if not processes:
        counts = client.request("GET", f"/apps/{name}/scale")
        if as_json:
            print_json(counts)
        else:
            typer.echo(" ".join(f"{k}={v}" for k, v in counts.items()))
        return
    wanted: dict[str, int] = {}
    for pair in processes:
        process, sep, count = pair.partition("=")
        if not sep or not count.strip().isdigit():
            fail(f"expected TYPE=COUNT such as web=2, got {pair!r}")
        wanted[process.strip()] = int(count)
    result = client.request("PUT", f"/apps/{name}/scale", json={"processes": wanted})
    shown = " ".join(f"{k}={v}" for k, v in result["formation"].items())
    if result["job"] is None:
        if as_json:
            print_json(result)
        else:
            typer.echo(f"{name}: {shown}; applies at the first deploy")
        return
    _finish_release(client, name, result["job"], wait=wait, as_json=as_json, what=f"scale to {shown}")


@app.command("build-plan")
def build_plan(
    name: str,
    ref: Annotated[str | None, typer.Option(help="Branch, tag or commit; default: the app's branch.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the Dockerfile a deploy would build (generated when the repo has none): redirect it to eject."""
    params = {"ref": ref} if ref else {}
    plan = _client().request("GET", f"/apps/{name}/build-plan", params=params)
    if as_json:
        print_json(plan)
        return
    err.print(f"# {name} at {plan['commit'][:12]}: {plan['summary']}", markup=False, highlight=False)
    for note in plan["notes"]:
        err.print(f"# {note}", markup=False, highlight=False)
    typer.echo(plan["dockerfile"], nl=False)


@domains_app.command("list")
def domains_list(
    name: Annotated[
        str | None, typer.Argument(help="An app; none: every hostname, the control plane's too.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Hostnames: HTTPS or not, certificate state, expiry, last error."""
    rows = _client().request("GET", f"/apps/{name}/domains" if name else "/domains")
    if as_json:
        print_json(rows)
        return
    table = Table("hostname", "app", "https", "certificate", "expires", "note")
    for d in rows:
        state = d["cert_state"] + (" (renewing soon)" if d["expiring"] else "")
        note = d["cert_error"] or ("default" if d["is_default"] else "")
        if d["next_attempt_at"] and d["cert_state"] == "failed":
            note += f" (next try {str(d['next_attempt_at'])[:16]})"
        expires = str(d["cert_expires_at"])[:10] if d["cert_expires_at"] else "-"
        app_name = d["app"] or "(control plane)"
        table.add_row(d["hostname"], app_name, "yes" if d["https"] else "no", state, expires, note)
    out.print(table)


@domains_app.command("add")
def domains_add(name: str, hostname: str, as_json: JsonOpt = False) -> None:
    """Serve the app at HOSTNAME too; its certificate is requested once DNS points here."""
    domain = _client().request("POST", f"/apps/{name}/domains", json={"hostname": hostname})
    if as_json:
        print_json(domain)
        return
    typer.echo(
        f"{name} will be served at {domain['hostname']} (certificate: {domain['cert_state']}); "
        "point its DNS at this server, then watch `paas domains list`"
    )


@domains_app.command("remove")
def domains_remove(name: str, hostname: str) -> None:
    """Stop serving the app at HOSTNAME (a custom one; the default stays)."""
    _client().request("DELETE", f"/apps/{name}/domains/{hostname}")
    typer.echo(f"{name} is no longer served at {hostname}")


@app.command()
def ps(name: str, as_json: JsonOpt = False) -> None:
    """The app's containers: process type, version, state, uptime, restarts, health."""
    rows = _client().request("GET", f"/apps/{name}/ps")
    if as_json:
        print_json(rows)
        return
    table = Table("process", "version", "state", "up", "restarts", "health", "container")
    for r in rows:
        up = _duration(r["uptime_seconds"]) if r["uptime_seconds"] is not None else "-"
        version = f"v{r['version']}" + (" (live)" if r["live"] else "")
        table.add_row(
            r["process"], version, r["state"], up, str(r["restarts"]), r["health"] or "-", r["name"]
        )
    out.print(table)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d"


@app.command()
def logs(
    name: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming new lines.")] = False,
    tail: Annotated[int, typer.Option(help="How many lines of the past to show first.", min=0)] = 100,
    process: Annotated[str, typer.Option(help="Which process type's containers.")] = "web",
    build: Annotated[
        str | None, typer.Option("--build", help="A release's build and release log instead, e.g. v3.")
    ] = None,
) -> None:
    """Runtime logs of the live release (or, with --build vN, a release's log)."""
    client = _client()
    if build:
        path = f"/apps/{name}/releases/{_version(build, option='--build')}/log"
        chunks = client.stream(path, follow=str(follow).lower())
    else:
        chunks = client.stream(f"/apps/{name}/logs", process=process, tail=tail, follow=str(follow).lower())
    try:
        for chunk in chunks:
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass


@app.command()
def releases(name: str, as_json: JsonOpt = False) -> None:
    """List an app's releases, newest first."""
    rows = _client().request("GET", f"/apps/{name}/releases")
    if as_json:
        print_json(rows)
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
