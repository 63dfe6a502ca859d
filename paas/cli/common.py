"""What both halves of the command line share: the Typer apps their
commands hang on, the consoles, and how a command fails (one line, exit 1).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from paas.errors import PaasError

app = typer.Typer(
    help="paas: push to GitHub, get a zero-downtime release.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
apps_app = typer.Typer(help="Create, list, inspect and delete apps.", no_args_is_help=True)
admin_app = typer.Typer(help="Server-side administration (run on the server).", no_args_is_help=True)
keys_app = typer.Typer(
    help="The encryption keys of env values (run on the server, as root).", no_args_is_help=True
)
env_app = typer.Typer(help="An app's env vars: encrypted at rest, secrets write-only.", no_args_is_help=True)
app.add_typer(apps_app, name="apps")
app.add_typer(admin_app, name="admin")
tokens_app = typer.Typer(help="API tokens: list and revoke (run on the server).", no_args_is_help=True)
admin_app.add_typer(tokens_app, name="tokens")
users_app = typer.Typer(
    help="Web UI users: list, delete, new password (run on the server).", no_args_is_help=True
)
admin_app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
domains_app = typer.Typer(help="An app's hostnames and their HTTPS certificates.", no_args_is_help=True)
app.add_typer(env_app, name="env")
app.add_typer(domains_app, name="domains")


def _show_version(value: bool) -> None:
    if value:
        from paas.version import version

        typer.echo(f"paas {version()}")
        raise typer.Exit


@app.callback()
def _options(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print paas's version and exit."
        ),
    ] = False,
) -> None:
    """paas: push to GitHub, get a zero-downtime release."""


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


def fail(message: str) -> NoReturn:
    raise PaasError(message)


def confirm(yes: bool, verb: str, question: str) -> None:
    """Go on with --yes or a yes at the terminal; with no terminal to ask, refuse."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"refusing to {verb} without confirmation: pass --yes")
    typer.confirm(question, abort=True)


def size_text(count: float) -> str:
    """A size in bytes as people read it: 812 bytes, 12.7 KiB, 1.1 GiB."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return ""


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))
