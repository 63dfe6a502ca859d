"""What a build reads from the checked-out commit: its Procfile, the
Dockerfile it builds with (the app's own, or one generated for a Python
app), and which images that Dockerfile may read. Shared by the build step
and by ``paas build-plan``; nothing is read through a symlink that leaves
the build context.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from agent.commands import parse_dockerfile
from agent.doors import ImageLookup
from paas.buildpack import GENERATED_DOCKERFILE, GeneratedBuild, context_file, for_app
from paas.dockerfile import (
    ImageRead,
    Mounts,
    cache_namespace,
    images_read,
    namespace_mounts,
    remembering,
)
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
PULL_TIMEOUT = 300  # seconds for a base image the engine does not have yet

# the repository paas tags its images in (agent/plan.py image_tag), as the engine may spell it
_OWN_NAMESPACE = re.compile(r"(?:(?:index\.)?docker\.io/)?paas/")


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
    settings: Settings,
    app: App,
    context: Path,
    procfile: dict[str, str],
    place: str,
    *,
    secrets: frozenset[str] = frozenset(),
    buildkit: bool | None = None,
) -> GeneratedBuild | None:
    """None when the build context has the app's Dockerfile; the one
    generated for a Python app when it names none of its own (``secrets``:
    the names of the app's build secrets, which it may read; ``buildkit``:
    whether BuildKit builds it, by default as PAAS_BUILDER says)."""
    if context_file(context, app.dockerfile) is not None:
        return None
    if app.dockerfile != DEFAULT_DOCKERFILE:
        raise InvalidInput(f"no {app.dockerfile} in {place}")
    if buildkit is None:
        buildkit = settings.builder == "buildkit"
    return for_app(context, app=app, settings=settings, procfile=procfile, secrets=secrets, buildkit=buildkit)


def write_dockerfile(
    settings: Settings,
    app: App,
    context: Path,
    procfile: dict[str, str],
    sha: str,
    on_line: Callable[[str], None],
    *,
    secrets: frozenset[str] = frozenset(),
    buildkit: bool | None = None,
) -> str:
    """The Dockerfile to build with; a generated one is written into the
    build context and shown in the build log."""
    place = where(app, sha)
    generated = choose_dockerfile(settings, app, context, procfile, place, secrets=secrets, buildkit=buildkit)
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
    docker: ImageLookup,
    app: str,
    context: Path,
    dockerfile: str,
    buildargs: dict[str, str],
    *,
    secrets: Mapping[str, str] | None = None,
    pull_timeout: float = PULL_TIMEOUT,
) -> str:
    """A build may read its own app's images and tagged images of no other
    app: every image the Dockerfile (and the ONBUILD triggers of its bases)
    reads must resolve to one, or the build is refused, naming it. An image
    the engine does not have is pulled first; a name that cannot be pulled
    is not public. Untagged images (another build's layers) are refused, and
    so is a name in paas's own repository that is not this app's image: it
    is never pulled, as an app's next release would take its tag.

    Returns the text to build: the Dockerfile with its cache mounts in the
    app's own namespace and its secret mounts given their ids (``secrets``:
    each build secret's name and id, agent/buildkit.secret_ids), checked
    with what it may mount as BuildKit would run it (paas/dockerfile.py)."""
    path = context_file(context, dockerfile)
    if path is None:
        raise InvalidInput(f"{dockerfile} is not a file inside the build context")
    try:
        text = path.read_bytes().decode("utf-8")  # as Docker reads it: no newline translation
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{dockerfile} is not UTF-8 text") from exc
    checked: dict[str, list[str]] = {}  # ref -> its ONBUILD triggers, once admitted

    def admit(read: ImageRead) -> list[str]:
        if read.ref not in checked:
            _admit(docker, app, read, pull_timeout)
            checked[read.ref] = list(docker.image_config(read.ref).get("OnBuild") or [])
        return checked[read.ref]

    namespace, parse = cache_namespace(app), remembering(parse_dockerfile)
    text = namespace_mounts(text, namespace, parse=parse, secrets=secrets)
    mounts = Mounts(namespace=namespace, secrets=frozenset((secrets or {}).values()))
    for read in images_read(text, buildargs, onbuild=admit, parse=parse, mounts=mounts):
        admit(read)
    return text


def _admit(docker: ImageLookup, app: str, read: ImageRead, pull_timeout: float) -> None:
    ref, where = read.ref, read.where
    known = docker.image_names_and_labels(ref)
    if known is None:
        if _OWN_NAMESPACE.match(ref):
            raise InvalidInput(
                f"the Dockerfile reads {ref!r} ({where}), a name in paas's own repository "
                f"that is no image of {app}: it is not pulled"
            )
        why = docker.pull(ref, timeout=pull_timeout)
        known = docker.image_names_and_labels(ref) if why is None else None
        if known is None:
            raise InvalidInput(
                f"the Dockerfile reads {ref!r} ({where}), which this server does not have and cannot pull "
                f"({why or 'the pull left no such image'}): an unresolvable name is not public"
            )
    names, labels = known
    owner = labels.get("paas.app")
    if owner is not None and owner != app:
        raise InvalidInput(
            f"the Dockerfile reads {ref!r}, an image of another app ({where}): that is not allowed"
        )
    if not names:
        raise InvalidInput(
            f"the Dockerfile reads {ref!r}, an untagged image ({where}): name a base image by its tag"
        )
