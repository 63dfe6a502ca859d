"""The long-running processes: ``paas up`` (web and agent under one
supervisor), ``paas web`` and ``paas agent`` (one systemd service each).

They start from paas/entry.py without the command line's libraries (Typer,
Click, Rich) and prepare the data directory, database and keys in a forked
child (paas/supervisor.py), which takes Alembic and the migrations away
with it: a daemon keeps in memory only what it runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import warnings

from paas import supervisor
from paas.errors import PaasError
from paas.settings import Settings, load_settings

__all__ = ["agent", "prepare", "run", "run_agent", "run_web", "up", "web"]


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("PAAS_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # one line per scheduled run is noise; its warnings and errors still show
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def run_web(settings: Settings) -> None:
    import uvicorn

    from web.app import create_web_app

    drop_privileges(settings)
    setup_logging()
    uvicorn.run(
        create_web_app(settings),
        host=settings.web_host,
        port=settings.web_port,
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        log_level="info",
        # live log streams never end by themselves: do not let them hold up a stop
        timeout_graceful_shutdown=10,
    )


def run_agent(settings: Settings) -> None:
    from agent.daemon import Agent
    from paas import layout

    setup_logging()
    layout.make_run_dir(settings)
    layout.hold_database_files(settings)
    trouble = layout.problems(settings)
    if trouble:
        raise PaasError(
            f"refusing to start the agent: {'; '.join(trouble)}. Run `paas migrate` as root to fix it."
        )
    stop = threading.Event()
    stop_on_signals(stop)
    agent = Agent(settings)
    try:
        agent.run(stop)
    finally:
        agent.db.dispose()  # its last connection may have removed the WAL files: root's again
        layout.hold_database_files(settings)


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop``, from a thread of its own. Set in the
    handler itself, the Event's lock could be taken twice by the main thread
    (a second signal arriving inside the first handler, or while the main
    thread holds it in ``wait``) and the agent would hang: the handler only
    writes a byte to a pipe."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    def watch() -> None:
        os.read(read_end, 1)
        stop.set()

    def on_signal(_signum: int, _frame: object) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(write_end, b".")

    threading.Thread(target=watch, daemon=True, name="stop-signals").start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)


def drop_privileges(settings: Settings) -> None:
    """Started as root, the web process becomes PAAS_WEB_USER, else nobody:
    it never runs as root."""
    if os.geteuid() != 0:
        return
    from paas import layout

    uid, gid = layout.web_ids(settings)
    if not settings.web_user:
        print("paas web: PAAS_WEB_USER is not set; running web as nobody", file=sys.stderr)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def prepare(*, create_keys: bool = True, make_layout: bool = True) -> Settings:
    """Make the data layout, migrate the database and make sure the keys exist.

    Only the privileged side (migrate, agent, up) may create keys: created by
    the web user, the agent's private key would be readable by the web. The
    agent checks the layout rather than making it (``paas migrate`` does).
    """
    from paas import layout
    from paas.crypto import Keyring, ensure_keys
    from paas.db import make_engine
    from paas.db import migrate as run_migrations
    from paas.key_rotation import encrypt_plain_webhook_secrets

    settings = load_settings()
    os.umask(0o007)  # the web user's group shares the database
    if make_layout:
        for note in layout.prepare(settings):
            logging.getLogger("paas").warning("%s", note)
    layout.hold_database_files(settings)  # before root opens them (a no-op for others)
    run_migrations(settings)
    if create_keys and ensure_keys(settings.keys_dir, web_user=settings.web_account):
        logging.getLogger("paas").warning("created new encryption keys in %s", settings.keys_dir)
    engine = make_engine(settings)
    try:
        encrypt_plain_webhook_secrets(engine, Keyring(settings.keys_dir, private=False))
    finally:
        engine.dispose()
    layout.hold_database_files(settings)  # as root we may have closed the last connection
    return settings


# What both web and the agent import, loaded by `paas up` before it forks them
# (paas/supervisor.py), with what uvicorn, anyio and httpx load once they serve or send.
# Only what both use: a page of a module one side alone uses would end up twice, the
# user's copy-on-write copy and the original left mapped, unused, in the other.
SHARED_MODULES = (
    "paas.services",
    "paas.domains",
    "fastapi",
    "jinja2",
    "httpx",
    "httpcore",
    "uvicorn",
    "uvicorn.lifespan.on",
    "uvicorn.loops.asyncio",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.protocols.websockets.auto",
    "anyio._backends._asyncio",
)


def up() -> None:
    """Web and agent together, forked from one parent that preloaded what
    they share; the parent then becomes the small supervisor."""
    settings = load_settings()
    os.umask(0o007)  # as prepare sets it: web and agent inherit it from here
    _prepare_in_child()
    supervisor.preload(SHARED_MODULES)
    children = {
        "web": supervisor.start_child("paas-web", run_web, settings),
        "agent": supervisor.start_child("paas-agent", run_agent, settings),
    }
    print(
        f"paas is up: control plane on http://{settings.web_host}:{settings.web_port}, "
        f"apps at http://<app>.{settings.domain}:{settings.http_port}",
        flush=True,
    )
    supervisor.exec_supervisor(children)


def web() -> None:
    """The control plane alone (systemd's paas-web)."""
    os.umask(0o007)  # the database is shared with the agent through the group
    _prepare_in_child(create_keys=False, make_layout=False)
    run_web(load_settings())


def agent() -> None:
    """The agent alone (systemd's paas-agent), after `paas migrate` made its layout."""
    os.umask(0o007)
    _prepare_in_child(make_layout=False)
    run_agent(load_settings())


def _prepare_in_child(*, create_keys: bool = True, make_layout: bool = True) -> None:
    def work() -> None:
        prepare(create_keys=create_keys, make_layout=make_layout)

    if supervisor.run_in_child("paas-prepare", work) != 0:
        raise PaasError("the data directory, database or keys could not be prepared (why is above)")


COMMANDS = {"up": up, "web": web, "agent": agent}


def run(command: str) -> int:
    """Run ``command`` (up, web or agent); its exit code. Expected failures
    print one line, as the command line's do."""
    _lean()
    try:
        COMMANDS[command]()
    except PaasError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return 0


def _lean() -> None:
    """What a daemon leaves out (they are measured: docs/benchmarks.md).

    httpx imports its own command line (Rich, Click, Pygments: 5 MiB) when
    they are installed, as Typer installs them; its package falls back to a
    stub when that import fails, which this makes it do. FastAPI imports
    pydantic.v1 (1.5 MiB) to ask of every route parameter whether it is a
    pydantic v1 model, and answers no without it: paas has none. Requests
    (under the Docker SDK, in the agent) imports charset_normalizer (3 MiB)
    to guess the encoding of a response that names none; without it, it
    says utf-8, which is what the Docker engine sends.

    glibc gives each thread that allocates an arena of its own (up to eight
    per core), whose free memory stays with it; the agent runs a dozen
    threads and web a pool of them. Two arenas cost no measurable speed
    here and keep that memory down. Set before web and the agent are forked,
    it holds in them too."""
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    sys.modules.setdefault("pydantic.v1", None)  # type: ignore[arg-type]
    for guesser in ("charset_normalizer", "chardet"):
        sys.modules.setdefault(guesser, None)  # type: ignore[arg-type]
    # requests warns once at import that it has no guesser: it is left out on purpose
    warnings.filterwarnings("ignore", message="Unable to find acceptable character detection")
    _few_malloc_arenas()


M_ARENA_MAX = -8  # glibc's malloc.h


def _few_malloc_arenas(arenas: int = 2) -> None:
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # a C library without mallopt: nothing to do
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas)  # the interpreter's own C library
