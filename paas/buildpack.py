"""Builds for Python apps without a Dockerfile (pure: reads the source tree,
renders a Dockerfile from ``templates/build``; no Docker, no network).

:func:`detect` looks at the build context the way App Platform does: how
dependencies are declared (uv.lock, poetry.lock, Pipfile, requirements.txt,
pyproject.toml), which Python the repository pins (``.python-version``,
``runtime.txt``) and, unless a run command is given, where the ASGI or WSGI
application lives. :func:`render_dockerfile` turns that into a Dockerfile
whose dependency layer comes before the source, so a source-only change
rebuilds in seconds. Every refusal says what was looked for.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from paas.errors import InvalidInput
from paas.models import App
from paas.settings import Settings

__all__ = [
    "BuildPlan",
    "Entry",
    "GeneratedBuild",
    "context_file",
    "for_app",
    "base_image_for",
    "default_workers",
    "detect",
    "detect_entry",
    "pinned_python",
    "render_dockerfile",
    "server_command",
]

GENERATED_DOCKERFILE = ".paas.Dockerfile"  # written into the build context, next to the source
DEFAULT_PORT = 8000  # $PORT when the app sets no port and its image EXPOSEs none
MAX_WORKERS = 4  # per container: a small VPS runs several containers

# (installer, the files that select it, label); the first match wins
INSTALLERS = (
    ("uv", ("pyproject.toml", "uv.lock"), "pyproject.toml with uv.lock"),
    ("poetry", ("pyproject.toml", "poetry.lock"), "pyproject.toml with poetry.lock"),
    ("pipenv", ("Pipfile",), "Pipfile"),
    ("requirements", ("requirements.txt",), "requirements.txt"),
    ("pyproject", ("pyproject.toml",), "pyproject.toml"),
)
LOOKED_FOR = (
    "a Dockerfile, requirements.txt, pyproject.toml (optionally with uv.lock or poetry.lock) or Pipfile"
)

ASGI_FRAMEWORKS = ("FastAPI", "Starlette", "Quart", "Litestar", "Sanic")
WSGI_FRAMEWORKS = ("Flask", "Bottle", "Falcon")
# modules where an app object usually lives, in the order they are tried
ENTRY_MODULES = (
    "main.py",
    "app/main.py",
    "src/main.py",
    "app.py",
    "api.py",
    "server.py",
    "wsgi.py",
    "asgi.py",
)
_ASSIGNED = re.compile(r"^(?P<var>[A-Za-z_]\w*)\s*(?::[^=]+)?=\s*(?:[\w.]+\.)?(?P<cls>\w+)\(", re.MULTILINE)
_VERSION = re.compile(r"(?:python-)?(?P<v>3\.\d{1,2})(?:\.\d+)?\s*")


@dataclass(frozen=True)
class Entry:
    """An application object a server can import: ``module:variable``."""

    kind: str  # asgi | wsgi
    target: str
    found_in: str


@dataclass(frozen=True)
class BuildPlan:
    installer: str
    installer_label: str
    base_image: str
    python_version: str | None  # pinned by the repository, if it is
    command: str | None  # the web command baked in as CMD (None: Procfile web or the app's setting)
    entry: Entry | None
    server_packages: tuple[str, ...] = ()
    install_project: bool = False
    pipfile_lock: bool = False
    notes: tuple[str, ...] = field(default=())


def pinned_python(root: Path) -> str | None:
    """``3.12`` from ``.python-version`` (3.12 or 3.12.4) or ``runtime.txt``
    (python-3.12.4); None when the repository pins nothing."""
    for name in (".python-version", "runtime.txt"):
        path = context_file(root, name)
        if path is None:
            continue
        for line in _read(path).splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            match = _VERSION.fullmatch(line)
            if match is None:
                raise InvalidInput(
                    f"{name}: expected a Python version such as 3.12 or python-3.12.4, got {line!r}"
                )
            return match.group("v")
    return None


def base_image_for(*, app_base: str, default_base: str, version: str | None) -> tuple[str, str | None]:
    """The image to build FROM, and a note when the repository's pin was not applied.

    The app's own base image wins as it is. Otherwise the installation's
    default, with a pinned version swapped into a ``python:X.Y-variant`` tag."""
    if app_base:
        note = (
            f"base image {app_base} is the app's setting (the repository pins {version})" if version else None
        )
        return app_base, note
    if version is None:
        return default_base, None
    repo, _, tag = default_base.partition(":")
    if repo.rsplit("/", 1)[-1] != "python" or not re.match(r"^3\.\d+", tag):
        return (
            default_base,
            f"the repository pins Python {version}, but {default_base} is not a python:X.Y image",
        )
    variant = re.sub(r"^3\.\d+(?:\.\d+)?", "", tag)
    return f"{repo}:{version}{variant}", None


def default_workers(cpus: int | None) -> int:
    """2 × cores, at least 1, at most MAX_WORKERS."""
    return max(1, min(2 * (cpus or 1), MAX_WORKERS))


def server_command(entry: Entry, workers: int) -> str:
    """gunicorn on $PORT: with uvicorn's worker for ASGI, plain for WSGI.
    WEB_CONCURRENCY (an env var) overrides the worker count. X-Forwarded-*
    are trusted from FORWARDED_ALLOW_IPS, which paas sets to nginx's address
    (gunicorn's own default, 127.0.0.1, where it is not set)."""
    worker_class = "-k uvicorn.workers.UvicornWorker " if entry.kind == "asgi" else ""
    return (
        f"exec gunicorn {worker_class}--bind 0.0.0.0:${{PORT:-8000}} "
        f"--workers ${{WEB_CONCURRENCY:-{workers}}} --access-logfile - "
        f'--forwarded-allow-ips "${{FORWARDED_ALLOW_IPS:-127.0.0.1}}" {entry.target}'
    )


def detect_entry(root: Path) -> Entry | None:
    """A Django project's wsgi/asgi module, else an app object assigned from a
    known framework in one of ENTRY_MODULES."""
    if context_file(root, "manage.py") is not None:
        for kind in ("wsgi", "asgi"):
            for found in sorted(root.glob(f"*/{kind}.py")):
                if context_file(root, str(found.relative_to(root))) and "application" in _read(found):
                    return Entry(
                        kind, f"{found.parent.name}.{kind}:application", str(found.relative_to(root))
                    )
    for name in ENTRY_MODULES:
        path = context_file(root, name)
        if path is None:
            continue
        module = name.removesuffix(".py").replace("/", ".")
        for match in _ASSIGNED.finditer(_read(path)):
            cls = match.group("cls")
            if cls in ASGI_FRAMEWORKS:
                return Entry("asgi", f"{module}:{match.group('var')}", name)
            if cls in WSGI_FRAMEWORKS:
                return Entry("wsgi", f"{module}:{match.group('var')}", name)
    return None


def detect(
    root: Path,
    *,
    run_command: str = "",
    procfile_web: str | None = None,
    app_base: str = "",
    default_base: str = "python:3.11-slim",
    workers: int = 2,
) -> BuildPlan:
    """What to build for a Python app with no Dockerfile at ``root``.

    The web command: the app's run command, else the Procfile's ``web:`` (both
    applied when containers start), else a detected ASGI/WSGI entry baked in
    as CMD. Raises InvalidInput naming what was looked for."""
    chosen = next(
        ((key, label) for key, files, label in INSTALLERS if all(context_file(root, f) for f in files)), None
    )
    if chosen is None:
        raise InvalidInput(
            f"no Dockerfile and nothing to build a Python app from: looked for {LOOKED_FOR}. "
            "For another language, add a Dockerfile to the repository."
        )
    installer, label = chosen
    version = pinned_python(root)
    base, base_note = base_image_for(app_base=app_base, default_base=default_base, version=version)
    notes = [base_note] if base_note else []
    entry, command = None, None
    if not run_command and procfile_web is None:
        entry = detect_entry(root)
        if entry is None:
            raise InvalidInput(
                "no web command: set the app's run command, add a `web:` line to a Procfile, or define "
                "the app object in one of " + ", ".join(ENTRY_MODULES) + " (e.g. `app = FastAPI()`), "
                "or a Django project with manage.py"
            )
        command = server_command(entry, workers)
        notes.append(
            f"web: {entry.kind.upper()} app {entry.target} (found in {entry.found_in}) served by gunicorn"
        )
    declared = _declared_names(root, installer)
    packages: list[str] = []
    if entry is not None:
        if "gunicorn" not in declared:
            packages.append("gunicorn>=22,<24")
        if entry.kind == "asgi" and "uvicorn" not in declared:
            packages.append("uvicorn>=0.30,<1")
    install_project = installer == "pyproject" and "build-system" in _pyproject(root)
    return BuildPlan(
        installer=installer,
        installer_label=label,
        base_image=base,
        python_version=version,
        command=command,
        entry=entry,
        server_packages=tuple(packages),
        install_project=install_project,
        pipfile_lock=context_file(root, "Pipfile.lock") is not None,
        notes=tuple(notes),
    )


PIP_CACHE = "--mount=type=cache,target=/root/.cache/pip "  # BuildKit: one of this app's caches
# what pip reads of a private index, which a build secret of that name gives every install
PIP_SECRETS = frozenset({"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"})


def pip_run_prefix(cache: bool, secrets: Sequence[str]) -> str:
    """What goes between ``RUN`` and a step that installs with pip: the
    cache mount, and each build secret mounted and exported for that step
    only (a secret in ENV or ARG would be in the image's history)."""
    mounts = (PIP_CACHE if cache else "") + "".join(f"--mount=type=secret,id={k} " for k in secrets)
    exports = "".join(f'{k}="$(cat /run/secrets/{k})" && export {k} && ' for k in secrets)
    return mounts + exports


def render_dockerfile(
    plan: BuildPlan,
    *,
    app: str,
    port: int,
    data_path: str | None,
    pip_cache: bool = False,
    pip_secrets: Sequence[str] = (),
) -> str:
    """The Dockerfile for ``plan``; with ``pip_cache`` (BuildKit builds),
    every pip install keeps its downloads in a cache mount, and reads the
    build secrets ``pip_secrets`` (a private index) for that step."""
    env = Environment(
        loader=PackageLoader("templates", "build"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701  (a Dockerfile, not HTML)
    )
    env.filters["tojson"] = json.dumps
    return env.get_template("python.Dockerfile.j2").render(
        app=app,
        installer=plan.installer,
        installer_label=plan.installer_label,
        base_image=plan.base_image,
        entry=plan.entry,
        server_packages=plan.server_packages,
        install_project=plan.install_project,
        pipfile_lock=plan.pipfile_lock,
        data_path=data_path,
        port=port,
        command=plan.command,
        pip_cache=pip_run_prefix(pip_cache, pip_secrets),
        cache_mounted=pip_cache,
    )


def context_file(root: Path, name: str) -> Path | None:
    """``root/name`` when it is a regular file inside ``root`` with every link
    resolved; else None. A repository's symlink may point anywhere on the
    server, and the agent that reads it is root."""
    real = (root / name).resolve()
    return real if real.is_relative_to(root.resolve()) and real.is_file() else None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path.name} is not UTF-8 text") from exc


def _pyproject(root: Path) -> dict[str, object]:
    path = context_file(root, "pyproject.toml")
    if path is None:
        return {}
    try:
        return tomllib.loads(_read(path))
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"pyproject.toml is not valid TOML: {exc}") from exc


def _declared_names(root: Path, installer: str) -> set[str]:
    """Lower-cased distribution names the dependency files mention (for the
    server packages: is gunicorn / uvicorn already there?)."""
    files = {
        "requirements": ["requirements.txt"],
        "pipenv": ["Pipfile", "Pipfile.lock"],
        "uv": ["pyproject.toml", "uv.lock"],
        "poetry": ["pyproject.toml", "poetry.lock"],
        "pyproject": ["pyproject.toml"],
    }[installer]
    text = "\n".join(_read(path) for f in files if (path := context_file(root, f))).lower()
    return {name for name in ("gunicorn", "uvicorn") if re.search(rf"(?<![\w-]){name}(?![\w-])", text)}


@dataclass(frozen=True)
class GeneratedBuild:
    """What a build without a Dockerfile uses: the plan and the rendered file."""

    plan: BuildPlan
    dockerfile: str


def for_app(
    root: Path,
    *,
    app: App,
    settings: Settings,
    procfile: dict[str, str],
    secrets: frozenset[str] = frozenset(),
    buildkit: bool = False,
) -> GeneratedBuild:
    """Detect and render for ``app`` (the deploy's build step and `paas
    build-plan`); ``secrets``: the names of its build secrets; ``buildkit``:
    whether BuildKit builds it (its mounts)."""
    plan = detect(
        root,
        run_command=app.run_command,
        procfile_web=procfile.get("web"),
        app_base=app.base_image,
        default_base=settings.base_image,
        workers=settings.web_workers or default_workers(os.cpu_count()),
    )
    port = app.port or DEFAULT_PORT
    rendered = render_dockerfile(
        plan,
        app=app.name,
        port=port,
        data_path=app.data_path,
        pip_cache=buildkit,
        pip_secrets=sorted(PIP_SECRETS & secrets) if buildkit else [],
    )
    return GeneratedBuild(plan, rendered)
