"""The doors a deploy acts through, as the pipeline uses them: one Protocol
per door, naming exactly the methods (and the arguments) the steps call.

The real doors (:class:`agent.docker_engine.DockerEngine`,
:class:`agent.nginx.NginxSites`, :class:`agent.source.SourceCache`,
:func:`agent.health.wait_healthy`) satisfy them as they are; so must the
fakes tests/unit/test_runner.py passes, and mypy checks that they do. A
return value the pipeline never reads is ``object`` here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from agent.docker_engine import BuildKitOptions, ContainerInfo, Limits, OneOffResult
from agent.health import HealthCheck
from agent.nginx import SiteSpec
from agent.source import CommitInfo

__all__ = ["EngineDoor", "HealthWait", "ImageLookup", "ImagePruning", "SitesDoor", "SourceDoor"]

LineSink = Callable[[str], None]


class ImageLookup(Protocol):
    """What checking the images a build reads needs (agent/build_context.py)."""

    def image_names_and_labels(self, ref: str) -> tuple[list[str], dict[str, str]] | None: ...

    def pull(self, ref: str, *, timeout: float) -> str | None: ...

    def image_config(self, ref: str) -> dict[str, Any]: ...


class ImagePruning(Protocol):
    """What retention needs (agent/retention.py)."""

    def images(self, labels: dict[str, str]) -> list[tuple[str, list[str], dict[str, str]]]: ...

    def remove_image(self, ref: str) -> bool: ...


class EngineDoor(ImageLookup, ImagePruning, Protocol):
    """The Docker engine, as the steps use it."""

    def build(
        self,
        *,
        context: Path,
        dockerfile: str,
        tag: str,
        labels: dict[str, str],
        on_line: LineSink,
        timeout: int,
        network: str,
        buildargs: dict[str, str] | None,
        should_stop: Callable[[], bool],
        memory: int | None,
        buildkit: BuildKitOptions | None = None,
        target: str = "",
    ) -> object: ...

    def buildkit_problem(self) -> str | None: ...

    def image_id(self, ref: str) -> str | None: ...

    def image_has_file(self, ref: str, path: str) -> bool: ...

    def run_once(
        self,
        *,
        image: str,
        command: list[str],
        name: str,
        env: dict[str, str],
        labels: dict[str, str],
        timeout: float,
        on_line: LineSink,
        volumes: dict[str, dict[str, str]] | None,
        should_stop: Callable[[], bool],
        limits: Limits | None,
        networks: Sequence[str] = (),
    ) -> OneOffResult: ...

    def published_ports(self) -> set[int]: ...

    def bridge_gateway(self) -> str: ...

    def start(
        self,
        *,
        image: str,
        name: str,
        command: list[str] | None,
        env: dict[str, str],
        labels: dict[str, str],
        container_port: int,
        host_ip: str,
        host_port: int | None,
        volumes: dict[str, dict[str, str]] | None,
        limits: Limits | None,
        networks: Sequence[str] = (),
    ) -> object: ...

    def container(self, name: str) -> ContainerInfo | None: ...

    def containers(self, labels: dict[str, str]) -> list[ContainerInfo]: ...

    def logs_tail(self, name: str, lines: int) -> list[str]: ...

    def stop_and_remove(self, name: str, *, timeout: int) -> None: ...


class SitesDoor(Protocol):
    """nginx's site files, as the switch uses them."""

    def current(self, app: str) -> str | None: ...

    def apply(self, app: str, content: str | None) -> None: ...

    def verify(self, spec: SiteSpec, *, span: float) -> None: ...


class SourceDoor(Protocol):
    """git, as fetch uses it (and the daemon, to forget a deleted app's clone)."""

    def fetch(self, *, app: str, url: str, ref: str, commit: str, on_line: LineSink) -> CommitInfo: ...

    def export(self, *, app: str, commit: str, dest: Path) -> None: ...

    def forget(self, app: str) -> None: ...


class HealthWait(Protocol):
    """Waiting until a web container passes its health check (agent/health.py)."""

    def __call__(self, check: HealthCheck, *, alive: Callable[[], str | None], on_line: LineSink) -> None: ...
