"""Client commands for an app's env vars: list, set, unset, import and
export (.env); a change rolls out a release unless told to stage it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from paas.cli.client import api_client, wait_for_job
from paas.cli.common import JsonOpt, env_app, err, fail, out, print_json
from paas.scopes import EnvScope

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


def _change(method: str, path: str, body: dict[str, Any], *, wait: bool, as_json: bool) -> None:
    """Send one env change (``body`` says whether it restarts) and say what it did."""
    client = api_client()
    result = client.request(method, path, json=body)
    restart = bool(body["restart"])
    for warning in result["warnings"]:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    job = result["job"]
    if wait and job:
        job = wait_for_job(client, job["id"], lambda j: err.print(f"  {j['state']}…", highlight=False))
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
    elif job["state"] == "done" and not job["version"]:
        typer.echo(job["error"])  # why no release was needed
    elif job["state"] == "done" or job.get("live"):
        typer.echo(f"{result['app']} v{job['version']} is live with this env")
    elif job["state"] in ("queued", "running"):
        typer.echo(f"rolling out a new release with this env (job {job['id']}); no rebuild")
    else:
        fail(f"release {job['state']}: {job['error']}")


@env_app.command("list")
def env_list(name: str, as_json: JsonOpt = False) -> None:
    """List an app's env vars; secret values show masked."""
    rows = api_client().request("GET", f"/apps/{name}/env")
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
    _change("PATCH", f"/apps/{name}/env", body, wait=wait, as_json=as_json)


@env_app.command("unset")
def env_unset(
    name: str,
    keys: Annotated[list[str], typer.Argument(help="Names to remove.")],
    no_restart: NoRestartOpt = False,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove env vars, all in one change."""
    _change(
        "PATCH", f"/apps/{name}/env", {"unset": keys, "restart": not no_restart}, wait=wait, as_json=as_json
    )


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
    _change("POST", f"/apps/{name}/env/import", body, wait=wait, as_json=as_json)


@env_app.command("export")
def env_export(name: str) -> None:
    """Print the app's env as a .env file (secrets masked, commented out)."""
    typer.echo(api_client().request("GET", f"/apps/{name}/env/export"), nl=False)
