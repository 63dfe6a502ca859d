"""Which images an app keeps: those of its last PAAS_KEEP_RELEASES successful
releases, of its live release and of any deploy in flight. A release reuses
its base's image, so an image is kept while any kept release names it. And
which release logs: those of its newest PAAS_KEEP_RELEASE_LOGS releases
(whatever their outcome) and of the live one.

``images_to_remove`` decides (pure, tested by equality); ``prune_images``
asks the database what is kept, deletes the rest and marks the releases that
named a removed image as no longer rollback-able.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from agent.doors import ImagePruning
from agent.plan import owned
from paas.db import session_scope
from paas.models import App, Deployment, DeploymentStatus

__all__ = [
    "Kept",
    "images_to_remove",
    "kept_releases",
    "logs_to_remove",
    "prune_images",
    "prune_release_logs",
]

Image = tuple[str, list[str], dict[str, str]]  # id, tags, labels (DockerEngine.images)


@dataclass(frozen=True)
class Kept:
    deployments: frozenset[str]  # ids of the kept releases (an image's paas.deployment label)
    tags: frozenset[str]  # the images they name


def images_to_remove(kept: Kept, images: list[Image]) -> list[list[str]]:
    """For each image not kept, the references to remove it by (its tags,
    else its id)."""
    return [
        tags or [image_id]
        for image_id, tags, labels in images
        if labels.get("paas.deployment") not in kept.deployments and not kept.tags.intersection(tags)
    ]


def kept_releases(session: Session, app: App, keep: int) -> Kept:
    kept = list(
        session.exec(
            select(Deployment)
            .where(Deployment.app_id == app.id, Deployment.status == DeploymentStatus.succeeded)
            .order_by(col(Deployment.version).desc())
            .limit(keep)
        ).all()
    )
    if app.current_deployment_id:
        current = session.get(Deployment, app.current_deployment_id)
        if current is not None:
            kept.append(current)
    # a deploy in flight (the scheduled clean-up may run beside it)
    kept += session.exec(
        select(Deployment).where(Deployment.app_id == app.id, Deployment.status == DeploymentStatus.running)
    ).all()
    return Kept(frozenset(str(d.id) for d in kept), frozenset(d.image for d in kept if d.image))


def prune_images(
    db: Engine,
    docker: ImagePruning,
    *,
    instance: str,
    app: str,
    keep: int,
    on_line: Callable[[str], None] | None = None,
) -> None:
    with session_scope(db) as session:
        app_row = session.exec(select(App).where(App.name == app)).one()
        kept = kept_releases(session, app_row, keep)
        app_id = app_row.id
    for refs in images_to_remove(kept, docker.images(owned(instance, app))):
        removed = [ref for ref in refs if docker.remove_image(ref)]
        if removed:
            _mark_pruned(db, app_id, removed)
        for ref in removed:
            if on_line:
                on_line(f"removed old image {ref}")


def _mark_pruned(db: Engine, app_id: int | None, refs: list[str]) -> None:
    """Releases naming a removed image can no longer be rolled back to."""
    with session_scope(db) as session:
        for dep in session.exec(
            select(Deployment).where(Deployment.app_id == app_id, col(Deployment.image).in_(refs))
        ).all():
            dep.image_pruned = True
            session.add(dep)


_LOG_NAME = re.compile(r"v([1-9][0-9]{0,18})\.log")


def logs_to_remove(versions: list[int], *, keep: int, live: int | None) -> list[int]:
    """The versions whose log goes: all but the newest ``keep`` and the live one."""
    newest = sorted(versions, reverse=True)[:keep]
    return sorted(v for v in versions if v not in newest and v != live)


def prune_release_logs(logs_dir: Path, app: str, *, keep: int, live: int | None) -> list[int]:
    """Remove the app's release logs beyond the newest ``keep`` (the live
    release's stays); returns their versions."""
    directory = logs_dir / app
    try:
        names = [m for p in directory.iterdir() if (m := _LOG_NAME.fullmatch(p.name))]
    except FileNotFoundError:
        return []
    gone = logs_to_remove([int(m[1]) for m in names], keep=keep, live=live)
    for version in gone:
        (directory / f"v{version}.log").unlink(missing_ok=True)
    return gone
