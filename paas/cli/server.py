"""Server commands: ``up``, ``web``, ``agent``, ``migrate``, ``admin`` and
``keys`` run on the server itself, as root (web drops to its own user). The
only module of the command line that imports ``web`` or ``agent``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from paas import daemons
from paas.cli.common import (
    JsonOpt,
    admin_app,
    app,
    confirm,
    fail,
    keys_app,
    out,
    print_json,
    size_text,
    tokens_app,
    users_app,
)
from paas.cli.databases import databases_app
from paas.settings import SETTINGS_FILE, Settings, load_settings, settings_file_values

if TYPE_CHECKING:  # the database's modules load when a command needs them
    from sqlmodel import Session, SQLModel


def _prepare() -> Settings:
    """The server's settings (its settings file read first, as the services
    read it), its layout made, database migrated and keys present."""
    read_settings_file()
    return daemons.prepare()


def read_settings_file() -> None:
    """install.sh's settings file (PAAS_ENV_FILE, else /etc/paas/paas.env)
    into this process's environment, where a variable is not set already:
    a command typed in a root shell sees what the services see. Its values
    are taken as written, as systemd takes them (no ${...} expansion)."""
    import os

    path = Path(os.environ.get("PAAS_ENV_FILE") or SETTINGS_FILE)
    if os.path.isfile(path) and os.access(path, os.R_OK):
        for name, value in settings_file_values(path.read_text(encoding="utf-8")).items():
            os.environ.setdefault(name, value)


@app.command()
def migrate() -> None:
    """Make the data layout, apply pending database migrations, create the encryption keys if absent."""
    from paas.instance import instance_id

    settings = _prepare()
    instance_id(settings.data_dir)
    typer.echo("database is up to date")
    typer.echo(f"encryption keys in {settings.keys_dir}")


@contextlib.contextmanager
def _database() -> Iterator[Session]:
    """A session on the server's database, its layout made and migrated first."""
    from paas.db import make_engine, session_scope

    with session_scope(make_engine(_prepare())) as session:
        yield session


def _none_yet(model: type[SQLModel]) -> bool:
    """No row of ``model`` exists yet (for --if-none)."""
    from sqlmodel import select

    with _database() as session:
        return session.exec(select(model)).first() is None


@app.command()
def web() -> None:
    """Run the control plane (API, webhooks, UI) in the foreground."""
    daemons.web()


@app.command()
def agent() -> None:
    """Run the deploy agent in the foreground (after `paas migrate` made its layout)."""
    daemons.agent()


@app.command()
def up() -> None:
    """Run web and agent together in the foreground (Ctrl-C stops both)."""
    daemons.up()


def _lifetime(text: str | None) -> timedelta | None:
    """90d, 12h or 30m; None for no expiry."""
    if not text:
        return None
    units = {"d": "days", "h": "hours", "m": "minutes"}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or int(number) < 1:
        fail(f"--expires takes a lifetime such as 90d, 12h or 30m, not {text!r}")
    return timedelta(**{units[unit]: int(number)})


@admin_app.command("create-token")
def create_token(
    name: Annotated[str, typer.Argument(help="A name to recognise the token by.")],
    if_none: Annotated[
        bool, typer.Option("--if-none", help="Only if no token exists yet (for install scripts).")
    ] = False,
    expires: Annotated[
        str | None, typer.Option(help="Stop working after this long: 90d, 12h, 30m (default: never).")
    ] = None,
) -> None:
    """Create an API token and print it alone on stdout."""
    from paas import tokens
    from paas.models import ApiToken

    lifetime = _lifetime(expires)
    if if_none and not _none_yet(ApiToken):
        return
    with _database() as session:
        token = tokens.create_token(session, name=name, lifetime=lifetime)
    typer.echo(token)


@admin_app.command("url")
def admin_url(
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the control plane's certificate while it is requested.")
    ] = 0,
) -> None:
    """The control plane's URL to give people and GitHub: https:// once its
    certificate is served. Without one, why not goes to stderr."""
    from sqlmodel import col, select

    from paas import services
    from paas.db import make_engine, session_scope
    from paas.models import CertState, Domain

    settings = _prepare()
    engine = make_engine(settings)
    deadline = time.monotonic() + wait
    while True:
        with session_scope(engine) as session:
            url = services.control_url(session, settings)
            row = session.exec(
                select(Domain).where(Domain.hostname == settings.control_host, col(Domain.app_id).is_(None))
            ).first()
            state, error = (row.cert_state, row.cert_error) if row else (CertState.pending, "")
        settled = url.startswith("https://") or state != CertState.pending or not settings.acme
        if settled or time.monotonic() >= deadline:
            break
        time.sleep(1)
    typer.echo(url)
    if not url.startswith("https://"):
        reason = "PAAS_ACME is off" if not settings.acme else error or f"{state}, not requested yet"
        typer.echo(f"no certificate for {settings.control_host} yet: {reason}", err=True)


@tokens_app.command("list")
def tokens_list(as_json: JsonOpt = False) -> None:
    """The API tokens: name, prefix, created, last used, expiry (never the token)."""
    from paas import tokens
    from paas.schemas import TokenPublic

    with _database() as session:
        rows = [TokenPublic.model_validate(t).model_dump(mode="json") for t in tokens.list_tokens(session)]
    if as_json:
        print_json(rows)
        return
    table = Table("name", "prefix", "created", "last used", "expires")
    for r in rows:
        table.add_row(
            r["name"], r["prefix"], r["created_at"], r["last_used_at"] or "-", r["expires_at"] or "never"
        )
    out.print(table)


@tokens_app.command("revoke")
def tokens_revoke(
    name: Annotated[str, typer.Argument(help="The tokens' name, or one token's prefix.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Revoke API tokens: the next request with one gets 401."""
    from paas import tokens

    confirm(yes, "revoke", f"Revoke the API tokens named {name}?")
    with _database() as session:
        count = tokens.revoke_tokens(session, name=name, actor="admin")
    typer.echo(f"revoked {count} token(s) named {name}")


@admin_app.command("create-user")
def create_user(
    username: Annotated[str, typer.Argument(help="The name to sign in to the web UI with.")],
    if_none: Annotated[
        bool, typer.Option("--if-none", help="Do nothing (and read no password) if any user exists.")
    ] = False,
) -> None:
    """Create a web UI user; the password is read from a hidden prompt (twice) or from stdin."""
    from paas import users
    from paas.models import User

    if if_none and not _none_yet(User):
        return
    password = _read_password()
    with _database() as session:
        user = users.create_user(session, username=username, password=password)
    typer.echo(f"created user {user.username}")


def _read_password() -> str:
    """From a hidden prompt (twice), or the first line of stdin."""
    if sys.stdin.isatty():
        return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    return sys.stdin.readline().rstrip("\n")


@users_app.command("list")
def users_list(as_json: JsonOpt = False) -> None:
    """The web UI users: name, created, last sign-in (never a password)."""
    from paas import users

    with _database() as session:
        rows = [
            {
                "username": u.username,
                "created_at": u.created_at.isoformat(),
                "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None,
            }
            for u in users.list_users(session)
        ]
    if as_json:
        print_json(rows)
        return
    table = Table("username", "created", "last sign-in")
    for r in rows:
        table.add_row(r["username"], r["created_at"], r["last_login_at"] or "never")
    out.print(table)


@users_app.command("passwd")
def users_passwd(
    username: Annotated[str, typer.Argument(help="Whose password to set.")],
) -> None:
    """Set a new password (hidden prompt, twice, or stdin); every session of the user ends."""
    from paas import services, users

    with _database() as session:
        users.get_user(session, username)  # before asking for a password
    password = _read_password()
    with _database() as session:
        user = users.change_password(session, username=username, password=password)
        services.record_event(session, actor="admin", action="user.password", detail=user.username)
    typer.echo(f"new password set for {user.username}; their sessions have ended")


@users_app.command("delete")
def users_delete(
    username: Annotated[str, typer.Argument(help="The user to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a web UI user; their sessions end at their next request."""
    from paas import services, users

    confirm(yes, "delete", f"Delete the web UI user {username}?")
    with _database() as session:
        users.delete_user(session, username=username)
        services.record_event(session, actor="admin", action="user.delete", detail=username)
        left = len(users.list_users(session))
    typer.echo(f"deleted user {username}; their sessions have ended")
    if not left:
        typer.echo("no user can sign in to the web UI now: create one with `paas admin create-user NAME`")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every env value and webhook secret under new keys.

    Web and agent keep running: they pick up the new keys from the files.
    The old keys are gone when this finishes.
    """
    from paas.db import make_engine
    from paas.key_rotation import rotate_keys

    settings = _prepare()
    engine = make_engine(settings)
    try:
        report = rotate_keys(engine, settings.keys_dir, web_user=settings.web_account)
    finally:
        engine.dispose()
    typer.echo(
        f"keys rotated: {report.env_values} env values, {report.release_snapshots} release "
        f"snapshots and {report.webhook_secrets} webhook secrets re-encrypted; old keys removed"
    )


def _need_root(command: str) -> None:
    import os

    if os.geteuid() != 0:
        fail(f"run `paas {command}` as root: the archive holds the encryption keys and the database")


@app.command()
def backup(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here (default: a new file in PAAS_BACKUP_DIR)."),
    ] = None,
    with_images: Annotated[
        bool,
        typer.Option("--with-images", help="Add the live images (docker save): restore needs no rebuild."),
    ] = False,
) -> None:
    """Write one archive (0600) of everything a restore needs: database, keys,
    settings, certificates, release logs and each app's data volume."""
    from agent.backup import BackupError, make_backup, tell_backup_failed
    from agent.docker_engine import DockerEngine

    _need_root("backup")
    settings = _prepare()
    try:
        made = make_backup(settings, DockerEngine(), output=output, with_images=with_images)
    except BackupError as exc:
        if tell_backup_failed(settings, exc):
            typer.echo("backup.failed is told to the notification targets that hear it", err=True)
        raise
    typer.echo(
        f"backup written: {made.path} ({size_text(made.size)}): {len(made.apps)} app(s)"
        f"{' (' + ', '.join(made.apps) + ')' if made.apps else ''}, "
        f"{len(made.volumes)} volume(s), {len(made.images)} image(s), "
        f"{len(made.databases)} database(s) dumped and checked"
    )
    typer.echo("it holds the keys that open every secret: keep it as safe as the server")


@app.command()
def restore(
    archive: Annotated[Path, typer.Argument(help="An archive written by `paas backup`.")],
) -> None:
    """Bring a backup back on a freshly installed server, paas stopped: then
    start paas and every app comes back at its live release."""
    from agent.backup import queue_restored_apps, restore_backup
    from agent.docker_engine import DockerEngine

    _need_root("restore")
    read_settings_file()
    settings = load_settings()
    docker = DockerEngine()
    done = restore_backup(settings, docker, archive)
    settings = _prepare()  # the database as this paas reads it (migrated), its keys checked
    said = queue_restored_apps(settings, docker)
    typer.echo(f"restored the backup made {done.made_at} by paas {done.made_by}:")
    for line in said:
        typer.echo(f"  {line}")
    if done.volumes:
        typer.echo(f"  volumes: {', '.join(done.volumes)}")
    if done.databases:
        typer.echo(f"  databases, with their data: {', '.join(done.databases)}")
    if done.settings_changed:
        typer.echo(
            f"settings taken from the backup ({settings.env_file}; the file it replaced is beside it, "
            f".before-restore): {', '.join(done.settings_changed)}"
        )
    if done.settings_refused:
        typer.echo(
            "settings of the backup not taken (paths, users, binaries, ports, the database and "
            "whom paas trusts stay this server's; the backup's whole file is "
            f"{settings.env_file}.from-backup): {', '.join(done.settings_refused)}"
        )
    typer.echo(
        "start paas now (deploy/install.sh, or systemctl start paas-agent paas-web): the apps come back "
        "as the agent works through them. Point DNS at this server; the API tokens, webhook secrets "
        "and web UI users are the backup's."
    )


@databases_app.command("backup")
def database_backup(
    name: str,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here (default: a new file in PAAS_BACKUP_DIR)."),
    ] = None,
) -> None:
    """One database's dumps, checked, in an archive of its own (on the server, as root)."""
    from agent.backup import backup_database
    from agent.docker_engine import DockerEngine

    _need_root("databases backup")
    settings = _prepare()
    made = backup_database(settings, DockerEngine(), name, output=output)
    typer.echo(
        f"backup of {name} written: {made.path} ({size_text(made.size)}), its dumps read back and good"
    )


@databases_app.command("restore")
def database_restore(
    name: str,
    source: Annotated[
        Path, typer.Option("--from", help="An archive of `paas databases backup` or `paas backup`.")
    ],
) -> None:
    """Load a database's dumps into database NAME, which must be new or empty (on the server, as root)."""
    from agent.backup import restore_database_archive
    from agent.docker_engine import DockerEngine

    _need_root("databases restore")
    settings = _prepare()
    typer.echo(restore_database_archive(settings, DockerEngine(), name, source))


@databases_app.command("console")
def database_console(name: str) -> None:
    """Open psql or redis-cli inside a database (on the server, as root; stdin may be a script)."""
    import os

    from sqlmodel import Session, select

    from agent.commands import become
    from agent.databases import console_argv
    from paas.db import make_engine
    from paas.models import Database
    from paas.trust import check_database

    if os.geteuid() != 0:
        fail("run `paas databases console` as root, on the server: it opens the database itself")
    read_settings_file()
    settings = load_settings()
    engine = make_engine(settings)
    try:
        with Session(engine) as session:
            row = session.exec(select(Database).where(Database.name == name)).first()
    finally:
        engine.dispose()
    if row is None:
        fail(f"no database named {name!r}")
    check_database(row, settings=settings)
    sys.stdout.flush()
    become(console_argv(row, tty=sys.stdin.isatty()))  # the docker CLI takes the terminal over


@app.command()
def doctor(as_json: JsonOpt = False) -> None:
    """Check what usually goes wrong (engine, nginx, web and agent, DNS, ports 80
    and 443 from outside, disk, file modes, clock, certificates, backups) and
    say how to fix each; exits 1 when something fails."""
    from rich.markup import escape

    from agent.doctor import FAIL, WARN, run_checks

    read_settings_file()
    checks = run_checks(load_settings())
    failed = [c for c in checks if c.status == FAIL]
    if as_json:
        print_json([c.as_dict() for c in checks])
    else:
        marks = {FAIL: "[red]FAIL[/red]", WARN: "[yellow]warn[/yellow]"}
        for c in checks:
            mark = marks.get(c.status, "[green] ok [/green]")
            out.print(f"{mark}  {escape(c.name)}: {escape(c.detail)}", highlight=False)
            if c.fix and c.status != "ok":
                out.print(f"      fix: {escape(c.fix)}", highlight=False)
        out.print(
            f"{len(failed)} failed, {sum(c.status == WARN for c in checks)} to look at, "
            f"{sum(c.status == 'ok' for c in checks)} ok",
            highlight=False,
        )
    if failed:
        raise typer.Exit(1)
