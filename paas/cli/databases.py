"""Client commands for databases: create, list, info, destroy, expose,
attach, detach (over the REST API; the agent does the work)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from paas.cli.client import api_client, finish_release, wait_for_job
from paas.cli.common import JsonOpt, app, confirm, fail, out, print_json, size_text
from paas.cli.http import ApiClient

databases_app = typer.Typer(
    help="Databases beside your apps: PostgreSQL and Redis, private, bound to apps by env.",
    no_args_is_help=True,
)
app.add_typer(databases_app, name="databases")

WaitOpt = Annotated[bool, typer.Option(help="Wait until the agent has done it.")]


def _finish(client: ApiClient, db: dict[str, Any], *, wait: bool, as_json: bool, what: str) -> None:
    job = db.get("job")
    if job is not None and wait:
        job = wait_for_job(client, job["id"], lambda _j: None)
        if job["state"] != "done":
            fail(f"{what} {job['state']}: {job['error']}")
        if what != "destroy":
            db = client.request("GET", f"/databases/{db['name']}")
        db["job"] = job
    if as_json:
        print_json(db)
    elif job is not None and not wait:
        typer.echo(f"{what} of {db['name']} queued (job {job['id']})")
    else:
        typer.echo(job["error"] if job and job.get("error") else f"{db['name']}: {db['state']}")


@databases_app.command("create")
def create(
    name: str,
    engine: Annotated[str, typer.Option(help="postgres or redis.")],
    version: Annotated[
        str | None, typer.Option(help="An exact version, e.g. 17 or 7.2; default: the server's.")
    ] = None,
    memory: Annotated[str, typer.Option(help="Memory limit, e.g. 512m; default: PAAS_DATABASE_MEMORY.")] = "",
    wait: WaitOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Create a database: its own container, network and volume, never on a host port."""
    client = api_client()
    body: dict[str, Any] = {"name": name, "engine": engine, "memory": memory}
    if version:
        body["version"] = version
    db = client.request("POST", "/databases", json=body)
    _finish(client, db, wait=wait, as_json=as_json, what="create")
    if wait and not as_json:
        typer.echo(
            f"attach it: paas databases attach {name} APP"
            f"  (or bind ${{{name}.DATABASE_URL}} in any env value)"
        )


@databases_app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """Every database, its engine, version and state."""
    found = api_client().request("GET", "/databases")
    if as_json:
        print_json(found)
        return
    table = Table("NAME", "ENGINE", "VERSION", "STATE", "ATTACHED", "EXPOSED")
    for d in found:
        exposed = f"127.0.0.1:{d['exposed_port']}" if d["exposed_port"] else "-"
        attached = ", ".join(a["app"] for a in d["attached"]) or "-"
        table.add_row(d["name"], d["engine"], d["version"], d["state"], attached, exposed)
    out.print(table)


@databases_app.command("info")
def info(name: str, as_json: JsonOpt = False) -> None:
    """A database: version, image, state, how apps reach it, who binds it, its last backup."""
    d = api_client().request("GET", f"/databases/{name}")
    if as_json:
        print_json(d)
        return
    rows = [
        ("name", d["name"]),
        ("engine", f"{d['engine']} {d['server_version'] or d['version']}"),
        ("image", f"{d['image']} ({d['image_digest'] or 'not started yet'})"),
        ("state", d["state"] + (f": {d['error']}" if d["error"] else "")),
        ("reached at", f"{d['hostname']}:{d['port']} (its private network: attached apps only)"),
        ("user, database", f"{d['username']}, {d['database']}"),
        ("memory", d["memory"] or "the server's PAAS_DATABASE_MEMORY"),
        ("exposed", f"127.0.0.1:{d['exposed_port']}" if d["exposed_port"] else "no"),
        ("size", size_text(d["stats"]["size"]) if d.get("stats") else "-"),
        (
            "connections",
            f"{d['stats']['connections']} of {d['stats']['max_connections']}" if d.get("stats") else "-",
        ),
        ("attached", "; ".join(f"{a['app']} ({', '.join(a['keys'])})" for a in d["attached"]) or "none"),
        ("bindable", " ".join(d["bindable"])),
        (
            "last backup",
            str(d["last_backup_at"] or "never")
            + (f" ({d['last_backup_error']})" if d["last_backup_error"] else ""),
        ),
    ]
    for key, value in rows:
        typer.echo(f"{key + ':':<16}{value}")


@databases_app.command("destroy")
def destroy(
    name: str,
    purge: Annotated[bool, typer.Option(help="Remove its volume too: the data is gone for good.")] = False,
    previous: Annotated[
        bool, typer.Option(help="Only the old instance a major upgrade left stopped.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
    wait: WaitOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Remove a database's container (refused while an app binds it); the volume stays unless --purge."""
    what = f"the previous instance of {name}" if previous else f"database {name}"
    question = f"Destroy {what}" + (" and its data, for good" if purge else " (its volume is kept)") + "?"
    confirm(yes, "destroy a database", question)
    client = api_client()
    params = {"purge": str(purge).lower(), "previous": str(previous).lower()}
    db = client.request("DELETE", f"/databases/{name}", params=params)
    _finish(client, db, wait=wait, as_json=as_json, what="destroy")


@databases_app.command("upgrade")
def upgrade(
    name: str,
    version: Annotated[str, typer.Option(help="The version to run, e.g. 17 or 15.8.")],
    wait: WaitOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """A minor version in place; a major one by dump, restore and row counts into a new instance."""
    client = api_client()
    db = client.request("PUT", f"/databases/{name}/version", json={"version": version})
    _finish(client, db, wait=wait, as_json=as_json, what="upgrade")


@databases_app.command("expose")
def expose(
    name: str,
    port: Annotated[int | None, typer.Option(help="Publish on 127.0.0.1:PORT, for an SSH tunnel.")] = None,
    no_expose: Annotated[bool, typer.Option("--no-expose", help="Stop publishing it.")] = False,
    wait: WaitOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Publish a database on 127.0.0.1 only (reach it with ssh -L), or stop; restarts it."""
    if (port is None) == (not no_expose):
        fail("give --port PORT, or --no-expose")
    client = api_client()
    db = client.request("PUT", f"/databases/{name}/expose", json={"port": None if no_expose else port})
    _finish(client, db, wait=wait, as_json=as_json, what="expose")
    if port and wait and not as_json:
        typer.echo(
            f"from your machine: ssh -N -L {port}:127.0.0.1:{port} root@SERVER,"
            f" then connect to 127.0.0.1:{port}"
        )


@databases_app.command("attach")
def attach(
    name: str,
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    as_key: Annotated[
        str | None,
        typer.Option("--as", help="The env var; default DATABASE_URL (postgres), REDIS_URL (redis)."),
    ] = None,
    restart: Annotated[
        bool, typer.Option(help="Release the app now (no downtime); --no-restart stages it.")
    ] = True,
    wait: Annotated[bool, typer.Option(help="Wait until the new release is live.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Give an app the database's URL as a secret env var, bound (${NAME.DATABASE_URL})."""
    client = api_client()
    body: dict[str, Any] = {"app": app_name, "restart": restart}
    if as_key:
        body["key"] = as_key
    result = client.request("POST", f"/databases/{name}/attach", json=body)
    _env_result(client, app_name, result, wait=wait, as_json=as_json, what=f"attach {name}")


@databases_app.command("detach")
def detach(
    name: str,
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    restart: Annotated[bool, typer.Option(help="Release the app now; --no-restart stages it.")] = True,
    wait: Annotated[bool, typer.Option(help="Wait until the new release is live.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Remove every env var of the app that binds the database."""
    client = api_client()
    result = client.request("POST", f"/databases/{name}/detach", json={"app": app_name, "restart": restart})
    _env_result(client, app_name, result, wait=wait, as_json=as_json, what=f"detach {name}")


def _env_result(
    client: ApiClient, app_name: str, result: dict[str, Any], *, wait: bool, as_json: bool, what: str
) -> None:
    if result["job"] is None:
        if as_json:
            print_json(result)
        else:
            typer.echo(f"{what}: staged for {app_name}'s next deploy")
        return
    finish_release(client, app_name, result["job"], wait=wait, as_json=as_json, what=what)
