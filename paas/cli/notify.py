"""``paas notify …``: notification targets (Apprise URLs, stored sealed,
listed masked), and the GitHub options of ``paas apps set``."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from paas.cli.common import JsonOpt, app, confirm, fail, out, print_json
from paas.notify_rules import EVENTS

notify_app = typer.Typer(
    help="Notifications (Slack, Discord, email, ntfy… through Apprise): add, list, test, remove.",
    no_args_is_help=True,
)
app.add_typer(notify_app, name="notify")

AppOpt = Annotated[str | None, typer.Option("--app", help="Only this app's events (default: every app's).")]


def _client() -> Any:
    from paas.cli.client import api_client

    return api_client()


def read_hidden(what: str) -> str:
    """A value from a hidden prompt, or the first line of stdin when it is not a terminal."""
    if sys.stdin.isatty():
        return str(typer.prompt(what, hide_input=True)).strip()
    value = sys.stdin.readline().strip()
    if not value:
        fail(f"no {what} on stdin")
    return value


@notify_app.command("add")
def notify_add(
    url: Annotated[
        str,
        typer.Argument(
            help="An Apprise URL (slack://…, discord://…, mailtos://…, ntfys://…, json://…); '-' reads it "
            "from stdin, so it stays out of your shell history."
        ),
    ],
    app_name: AppOpt = None,
    events: Annotated[
        str, typer.Option("--events", help=f"Comma-separated; default all: {', '.join(EVENTS)}.")
    ] = "",
    as_json: JsonOpt = False,
) -> None:
    """Send notifications to one more place. The URL is stored sealed: it is never shown again."""
    if url == "-":
        url = read_hidden("notification URL")
    body = {"url": url, "app": app_name, "events": [e.strip() for e in events.split(",") if e.strip()]}
    target = _client().request("POST", "/notifications", json=body)
    if as_json:
        print_json(target)
        return
    scope = f"{target['app']}'s events" if target["app"] else "every app's events"
    typer.echo(
        f"added notification target {target['id']} ({target['url']}) for {scope}: "
        f"{', '.join(target['events']) or 'all'}; try it with `paas notify test {target['id']}`"
    )


@notify_app.command("list")
def notify_list(app_name: AppOpt = None, as_json: JsonOpt = False) -> None:
    """List notification targets: masked URLs, their events, and whether the last one reached them."""
    targets = _client().request("GET", "/notifications", params={"app": app_name} if app_name else None)
    if as_json:
        print_json(targets)
        return
    table = Table("id", "app", "url", "events", "last sent", "waiting", "last error")
    for t in targets:
        table.add_row(
            str(t["id"]),
            t["app"] or "(all)",
            t["url"],
            ", ".join(t["events"]) or "all",
            (t["last_sent_at"] or "-")[:19],
            str(t["waiting"]),
            t["last_error"] or "-",
        )
    out.print(table)


@notify_app.command("test")
def notify_test(target_id: int, as_json: JsonOpt = False) -> None:
    """Send a test notification now; exits 1 if it did not arrive."""
    # the agent waits up to PAAS_NOTIFY_TIMEOUT (30 s) for the service, web a little longer
    result = _client().request("POST", f"/notifications/{target_id}/test", timeout=120)
    if as_json:
        print_json(result)
    elif result["ok"]:
        typer.echo(f"sent a test notification to target {target_id}")
    if not result["ok"]:
        fail(f"target {target_id}: not delivered: {result['error']}")


@notify_app.command("remove")
def notify_remove(
    target_id: int, yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False
) -> None:
    """Stop sending notifications to a target."""
    confirm(yes, "remove a notification target", f"Remove notification target {target_id}?")
    _client().request("DELETE", f"/notifications/{target_id}")
    typer.echo(f"removed notification target {target_id}")


def set_github(
    name: str, *, token: bool, remove: bool, repo: str | None, environment: str | None
) -> dict[str, Any]:
    """``paas apps set --github-token/--no-github-token/--github-repo/--github-environment``."""
    body: dict[str, Any] = {}
    if token and remove:
        fail("give --github-token or --no-github-token, not both")
    if token:
        body["token"] = read_hidden("GitHub token")
    if remove:
        body["token"] = ""
    if repo is not None:
        body["repo"] = repo
    if environment is not None:
        body["environment"] = environment
    return dict(_client().request("PUT", f"/apps/{name}/github", json=body))
