"""What a build reads from the checked-out commit: its Procfile, the
Dockerfile it builds with (the app's own, or one generated for a Python
app), and which images that Dockerfile may read. Shared by the build step
and by ``paas build-plan``; nothing is read through a symlink that leaves
the build context.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from agent.docker_engine import DockerEngine
from paas.buildpack import GENERATED_DOCKERFILE, GeneratedBuild, context_file, for_app
from paas.dockerfile import image_references
from paas.errors import InvalidInput
from paas.models import App
from paas.procfile import parse_procfile
from paas.settings import Settings

__all__ = [
    "DEFAULT_DOCKERFILE",
    "check_images_read",
    "choose_dockerfile",
    "read_procfile",
    "where",
    "write_dockerfile",
]

DEFAULT_DOCKERFILE = "Dockerfile"


def where(app: App, sha: str) -> str:
    """How a build's error messages name the place they looked."""
    return f"{app.source_dir or 'the repository root'} at {sha[:12]}"


def read_procfile(context: Path) -> dict[str, str]:
    path = context_file(context, "Procfile")
    if path is None:
        return {}
    try:
        return parse_procfile(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidInput("Procfile is not UTF-8 text") from exc


def choose_dockerfile(
    settings: Settings, app: App, context: Path, procfile: dict[str, str], place: str
) -> GeneratedBuild | None:
    """None when the build context has the app's Dockerfile; the one
    generated for a Python app when it names none of its own."""
    if context_file(context, app.dockerfile) is not None:
        return None
    if app.dockerfile != DEFAULT_DOCKERFILE:
        raise InvalidInput(f"no {app.dockerfile} in {place}")
    return for_app(context, app=app, settings=settings, procfile=procfile)


def write_dockerfile(
    settings: Settings,
    app: App,
    context: Path,
    procfile: dict[str, str],
    sha: str,
    on_line: Callable[[str], None],
) -> str:
    """The Dockerfile to build with; a generated one is written into the
    build context and shown in the build log."""
    place = where(app, sha)
    generated = choose_dockerfile(settings, app, context, procfile, place)
    if generated is None:
        return app.dockerfile
    path = context / GENERATED_DOCKERFILE
    if path.is_symlink() or path.exists():
        path.unlink()  # the repository's own file of that name, or a link planted to redirect us
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(generated.dockerfile)
    path.chmod(0o644)  # like the checked-out source, whatever the agent's umask
    on_line(f"no Dockerfile in {place}: building a Python app from {generated.plan.installer_label}")
    for note in generated.plan.notes:
        on_line(note)
    on_line(f"generated Dockerfile (`paas build-plan {app.name}` prints it):")
    for line in generated.dockerfile.splitlines():
        on_line(f"  | {line}")
    return GENERATED_DOCKERFILE


def check_images_read(
    docker: DockerEngine, app: str, context: Path, dockerfile: str, buildargs: dict[str, str]
) -> None:
    """A build may read public base images and its own app's images: not
    another app's (its code and build-time values), nor an untagged image
    (another build's intermediate layers) named by id."""
    path = context_file(context, dockerfile)
    if path is None:
        raise InvalidInput(f"{dockerfile} is not a file inside the build context")
    text = path.read_text(encoding="utf-8", errors="replace")
    for ref in image_references(text, buildargs):
        known = docker.image_names_and_labels(ref)
        if known is None:
            continue  # not on this engine: a public image the engine may pull
        names, labels = known
        owner = labels.get("paas.app")
        if owner is not None and owner != app:
            raise InvalidInput(f"the Dockerfile reads {ref!r}, an image of another app: that is not allowed")
        if not names:
            raise InvalidInput(
                f"the Dockerfile reads {ref!r}, an untagged image: name a base image by its tag"
            )
