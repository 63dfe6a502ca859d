"""Client commands about what runs: scale, build plans, domains, ps, logs
and releases."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from paas.cli.client import QuickWait, api_client, finish_release, release_version
from paas.cli.common import JsonOpt, app, domains_app, err, fail, out, print_json


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
    client = api_client()
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
    finish_release(client, name, result["job"], wait=wait, as_json=as_json, what=f"scale to {shown}")


@app.command("build-plan")
def build_plan(
    name: str,
    ref: Annotated[str | None, typer.Option(help="Branch, tag or commit; default: the app's branch.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the Dockerfile a deploy would build (generated when the repo has none): redirect it to eject."""
    params = {"ref": ref} if ref else {}
    plan = api_client().request("GET", f"/apps/{name}/build-plan", params=params)
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
    rows = api_client().request("GET", f"/apps/{name}/domains" if name else "/domains")
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
    domain = api_client().request("POST", f"/apps/{name}/domains", json={"hostname": hostname})
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
    api_client().request("DELETE", f"/apps/{name}/domains/{hostname}")
    typer.echo(f"{name} is no longer served at {hostname}")


@app.command()
def ps(name: str, as_json: JsonOpt = False) -> None:
    """The app's containers: process type, version, state, uptime, restarts, health."""
    rows = api_client().request("GET", f"/apps/{name}/ps")
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
    client = api_client()
    if build:
        path = f"/apps/{name}/releases/{release_version(build, option='--build')}/log"
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
    rows = api_client().request("GET", f"/apps/{name}/releases")
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
