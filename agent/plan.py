"""Decide, then do: the pure half of a deploy.

``make_plan`` turns an app, a deployment and what the build revealed (the
Procfile, the image's EXPOSE, the free host port) into a :class:`ReleasePlan`:
every name, label, command and port the executor will use. No I/O here; the
tests compare plans with equality.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from paas.buildpack import DEFAULT_PORT
from paas.models import App, Deployment
from paas.procfile import formation

__all__ = [
    "in_release",
    "owned",
    "ProcessSpec",
    "ReleasePlan",
    "process_command",
    "container_port",
    "image_tag",
    "labels_for",
    "make_plan",
    "release_command",
]

PRESTART_CANDIDATES = ("prestart.sh", "/app/prestart.sh")


def data_volume(app: str) -> str:
    return f"paas-{app}-data"


def image_tag(app: str, version: int) -> str:
    return f"paas/{app}:v{version}"


def owned(instance: str, app: str | None = None) -> dict[str, str]:
    """The label selector for what this installation made (for one app)."""
    return {"paas.instance": instance} if app is None else {"paas.instance": instance, "paas.app": app}


def in_release(
    name: str, labels: dict[str, str], deployment_id: int | None, containers: Collection[str]
) -> bool:
    """Whether container ``name`` runs release ``deployment_id``: named in
    the release's row (a rollback that took back the containers of the release
    it rolls back to lists theirs, labelled with that release), or labelled
    with it (what every other release's containers are)."""
    if deployment_id is None:
        return False
    return name in containers or labels.get("paas.deployment") == str(deployment_id)


def labels_for(*, instance: str, app: str, deployment_id: int, version: int) -> dict[str, str]:
    return {
        "paas.instance": instance,
        "paas.app": app,
        "paas.deployment": str(deployment_id),
        "paas.version": str(version),
    }


def container_port(app_port: int | None, exposed: dict[str, object] | None) -> int:
    """The app's setting, else the image's first exposed TCP port, else 8000."""
    if app_port:
        return app_port
    tcp = sorted(int(p.split("/")[0]) for p in (exposed or {}) if p.endswith("/tcp"))
    return tcp[0] if tcp else DEFAULT_PORT


def release_command(
    procfile: dict[str, str], prestart_path: str | None, setting: str = ""
) -> list[str] | None:
    """The app's release command setting wins (it is said on purpose, as the
    run command is); else the Procfile's ``release:``; else the image's
    prestart.sh; else none."""
    if setting:
        return ["/bin/sh", "-c", setting]
    if "release" in procfile:
        return ["/bin/sh", "-c", procfile["release"]]
    if prestart_path:
        return ["sh", prestart_path]
    return None


@dataclass(frozen=True)
class ProcessSpec:
    """One container of one process type: web ones get a host port and traffic."""

    process: str
    index: int
    name: str
    command: list[str] | None  # None: the image's CMD
    labels: dict[str, str]
    host_port: int = 0  # web only: chosen when it starts


@dataclass(frozen=True)
class ReleasePlan:
    app: str
    version: int
    image: str
    release_container_name: str
    labels: dict[str, str]
    release_command: list[str] | None
    container_port: int
    host_ip: str
    processes: tuple[ProcessSpec, ...]
    env: dict[str, str] = field(default_factory=dict)
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)
    networks: tuple[str, ...] = ()  # of the databases its env binds: every container joins them

    @property
    def web(self) -> tuple[ProcessSpec, ...]:
        return tuple(p for p in self.processes if p.process == "web")

    @property
    def upstreams(self) -> tuple[str, ...]:
        return tuple(f"{self.host_ip}:{p.host_port}" for p in self.web)


def process_command(process: str, procfile: dict[str, str], run_command: str) -> list[str] | None:
    """web: the app's run command, else the Procfile's web line, else the
    image's CMD; other types: their Procfile line."""
    command = (run_command or procfile.get("web")) if process == "web" else procfile[process]
    return ["/bin/sh", "-c", command] if command else None


def make_plan(
    *,
    app: App,
    deployment: Deployment,
    instance: str,
    procfile: dict[str, str],
    exposed: dict[str, object] | None,
    prestart_path: str | None,
    env: dict[str, str] | None = None,
    networks: tuple[str, ...] = (),
    proxy: str = "",
) -> ReleasePlan:
    """``proxy``: the address nginx reaches the containers from, which the
    app's server may trust for X-Forwarded-* (FORWARDED_ALLOW_IPS, read by
    uvicorn and gunicorn; the app's own env var wins)."""
    assert deployment.id is not None
    labels = labels_for(
        instance=instance, app=app.name, deployment_id=deployment.id, version=deployment.version
    )
    port = container_port(app.port, exposed)
    processes = tuple(
        ProcessSpec(
            process=process,
            index=index,
            name=f"paas-{app.name}-{process}-v{deployment.version}-{index}",
            command=process_command(process, procfile, app.run_command),
            labels={**labels, "paas.process": process},
        )
        for process, count in formation(procfile, app.scale).items()
        for index in range(1, count + 1)
    )
    return ReleasePlan(
        app=app.name,
        version=deployment.version,
        image=deployment.image or image_tag(app.name, deployment.version),  # a release reuses its base's
        release_container_name=f"paas-{app.name}-release-v{deployment.version}",
        labels=labels,
        release_command=release_command(procfile, prestart_path, app.release_command),
        container_port=port,
        host_ip="127.0.0.1",
        processes=processes,
        env={**({"FORWARDED_ALLOW_IPS": proxy} if proxy else {}), **(env or {}), "PORT": str(port)},
        volumes={data_volume(app.name): {"bind": app.data_path, "mode": "rw"}} if app.data_path else {},
        networks=networks,
    )
