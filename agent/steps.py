"""The deploy steps, one function each: fetch, build, release, start, health,
switch, retire.

Every step has the same signature, ``step(doors, attempt)``: it acts through
the door modules in ``doors`` (the tests pass fakes), records what it made
on the attempt, and registers how to undo it (``attempt.on_undo``). A step
that fails for a reason of the app or the machine raises ``StepFailed`` with
its name, or an error of a door module (the runner names the step); a
cancel raises ``Cancelled``. The runner (agent/pipeline.py) decides which
steps a job walks, times them and undoes in reverse.

Release jobs (an env change, a restart, a scale, a rollback) reuse an image
already built: ``reuse_image`` prepares them, then they walk from release on.
"""

from __future__ import annotations

import errno
import random
import re
import shutil
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import Engine

from agent.build_context import check_images_read, read_procfile, write_dockerfile
from agent.buildkit import secret_ids
from agent.deploylog import DeployLog
from agent.docker_engine import BuildKitOptions, EngineError, Limits
from agent.doors import EngineDoor, HealthWait, SitesDoor, SourceDoor
from agent.drainer import Drainer
from agent.health import HealthCheck, Unhealthy, wait_healthy
from agent.nginx import NginxError, render_site
from agent.plan import PRESTART_CANDIDATES, ProcessSpec, ReleasePlan, image_tag, labels_for, make_plan, owned
from agent.releases import Releases
from agent.retention import prune_images, prune_release_logs
from agent.sites import app_site_for
from paas import queue
from paas.db import database_full
from paas.env_snapshots import OpenedEnv
from paas.errors import ErrorKind, PaasError, StepFailed
from paas.models import App, Job
from paas.payloads import DeployPayload, ReleasePayload, RollbackPayload
from paas.procfile import formation
from paas.settings import Settings, memory_bytes

__all__ = [
    "AFTER_SWITCH",
    "STEPS",
    "Attempt",
    "Cancelled",
    "Doors",
    "Step",
    "reuse_image",
    "steps_for",
]


class Cancelled(PaasError):
    """``paas cancel`` asked this deploy to stop; the argument names the step."""

    status_code = 409


@dataclass
class Doors:
    """Everything a step acts through: the doors as Protocols (agent/doors.py),
    which the real ones and the tests' fakes both satisfy."""

    settings: Settings
    db: Engine
    docker: EngineDoor
    nginx: SitesDoor
    source: SourceDoor
    releases: Releases
    instance: str
    drainer: Drainer
    wait_healthy: HealthWait = wait_healthy


Undo = Callable[[], str | None]  # undoes one thing; returns the log line, if any


@dataclass
class Attempt:
    """One run of a job: what it works on, what it made, and how to undo that."""

    job: Job
    payload: DeployPayload | ReleasePayload  # what the job asks, checked (paas/trust.py)
    app: App
    dep_id: int
    version: int
    env: OpenedEnv
    dlog: DeployLog
    should_stop: Callable[[], bool]
    build_dir: Path
    commit: str = ""
    image: str = ""
    procfile: dict[str, str] = field(default_factory=dict)
    plan: ReleasePlan | None = None
    run_release: bool = True
    switched: bool = False
    undo: dict[str, Undo] = field(default_factory=dict)  # what was made → how to remove it, in order

    def on_undo(self, what: str, how: Undo) -> None:
        self.undo[what] = how

    def made_for_good(self, what: str) -> None:
        """``what`` needs no undo after all (removed already, or never made)."""
        self.undo.pop(what, None)

    def need_plan(self) -> ReleasePlan:
        assert self.plan is not None, "build or reuse_image makes the plan"
        return self.plan


Step = Callable[[Doors, Attempt], None]


# fetch and build (deploy jobs) ----------------------------------------------------------


def _full(exc: BaseException) -> bool:
    """A full disk, as the door that met it said: a door's error of kind
    ``disk_full`` (the engine, git, nginx), the system's errno, the database's code."""
    return (
        (isinstance(exc, PaasError) and exc.kind is ErrorKind.disk_full)
        or (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT))
        or database_full(exc)
    )


def disk_full(exc: BaseException, settings: Settings) -> str | None:
    """The reason to give when ``exc`` (or what it wraps) means a full disk:
    the data directory's, or the engine's."""
    seen: BaseException | None = exc
    while seen is not None:
        if _full(seen):
            try:
                free = (
                    f"{shutil.disk_usage(settings.data_dir).free / 2**20:.0f} MiB free in {settings.data_dir}"
                )
            except OSError:
                free = f"{settings.data_dir} unreadable"
            said = " ".join(str(exc).split())[-300:]
            return f"disk full ({free}): free space (paas doctor, docker system df) and deploy again. {said}"
        seen = seen.__cause__ or seen.__context__
    return None


def fetch(doors: Doors, a: Attempt) -> None:
    asked = a.payload
    ref, commit = (asked.ref, asked.commit) if isinstance(asked, DeployPayload) else (None, "")
    try:
        info = doors.source.fetch(
            app=a.app.name, url=a.app.repo_url, ref=ref or a.app.branch, commit=commit, on_line=a.dlog.line
        )
        doors.source.export(app=a.app.name, commit=info.sha, dest=a.build_dir)
    except Exception as exc:
        if disk_full(exc, doors.settings) is not None:
            # git leaves the objects it could not finish writing: they would keep the disk full
            doors.source.forget(a.app.name)
            a.dlog.line(
                "removed the app's git cache (partial objects of the failed fetch); refetched next time"
            )
        raise
    a.commit = info.sha
    doors.releases.update(a.dep_id, commit=info.sha, commit_message=info.message[:2000])


def build(doors: Doors, a: Attempt) -> None:
    s, app = doors.settings, a.app
    context = a.build_dir / app.source_dir if app.source_dir else a.build_dir
    tag = image_tag(app.name, a.version)
    procfile = read_procfile(context)
    secrets = a.env.build_secrets
    named = frozenset(secrets)
    with_buildkit = s.builder == "buildkit"
    problem = doors.docker.buildkit_problem() if with_buildkit else "PAAS_BUILDER=classic"
    if problem and secrets:
        # a build without them would install from the public index what it meant to take from a
        # private one (dependency confusion): refused, not built
        raise StepFailed(
            "build",
            f"build secrets ({', '.join(sorted(secrets))}) need a BuildKit build, and this one would be "
            f"classic: {problem}",
        )
    if with_buildkit and problem:
        a.dlog.line(f"building with the classic builder: {problem}")
        with_buildkit = False
    dockerfile = write_dockerfile(
        s, app, context, procfile, a.commit, a.dlog.line, secrets=named, buildkit=with_buildkit
    )
    labels = labels_for(instance=doors.instance, app=app.name, deployment_id=a.dep_id, version=a.version)
    ids = secret_ids(s.builds_dir, app.name, secrets)
    text = check_images_read(doors.docker, app.name, context, dockerfile, a.env.build_args, secrets=ids)
    a.image = tag
    a.on_undo(f"image {tag}", _remove_image(doors, tag))
    buildkit = None
    if with_buildkit:
        buildkit = BuildKitOptions(
            cli=s.docker_cli,
            dockerfile_text=text,
            pids=s.build_pids,
            secrets={ids[name]: value for name, value in secrets.items()},
            scratch=s.builds_dir,
        )
    try:
        doors.docker.build(
            context=context,
            dockerfile=dockerfile,
            tag=tag,
            labels=labels,
            on_line=a.dlog.line,
            timeout=s.build_timeout,
            network=s.build_network,
            buildargs=a.env.build_args,
            should_stop=a.should_stop,
            memory=memory_bytes(s.build_memory),
            buildkit=buildkit,
            target=app.build_target,
        )
    except EngineError as exc:
        if buildkit is None and "requires BuildKit" in str(exc):  # the classic builder's words
            raise StepFailed(
                "build", f"the Dockerfile needs BuildKit, which this build could not use ({problem}): {exc}"
            ) from exc
        raise
    a.procfile = procfile
    doors.releases.update(a.dep_id, image=tag, procfile=procfile)
    a.plan = _plan(doors, a, find_prestart=True)


def reuse_image(doors: Doors, a: Attempt) -> None:
    """A release job: the image already built (the live one, or a
    rollback's), with an env; no fetch, no build."""
    dep = doors.releases.get(a.dep_id)
    a.dlog.line(f"reusing image {dep.image} (no build)")
    if doors.docker.image_id(dep.image) is None:
        raise StepFailed(
            "release",
            f"image {dep.image} is gone; rebuild its commit with "
            f"`paas deploy {a.app.name} --commit {dep.commit[:12]}`",
        )
    a.image, a.procfile = dep.image, dict(dep.procfile)
    a.run_release = a.payload.run_release if isinstance(a.payload, ReleasePayload) else True
    a.plan = _plan(doors, a, find_prestart=a.run_release)


def _plan(doors: Doors, a: Attempt, *, find_prestart: bool) -> ReleasePlan:
    config = doors.docker.image_config(a.image)
    # looking for prestart.sh creates containers: skip it when no release runs
    wanted = find_prestart and "release" not in a.procfile and not a.app.release_command
    prestart = _find_prestart(doors.docker, a.image, config) if wanted else None
    total = sum(formation(a.procfile, a.app.scale).values())
    limit = doors.settings.max_containers_per_app
    if total > limit:
        raise StepFailed(
            "start",
            f"the Procfile and scale ask for {total} containers; an app may run at most "
            f"{limit} (PAAS_MAX_CONTAINERS_PER_APP)",
        )
    return make_plan(
        app=a.app,
        deployment=doors.releases.get(a.dep_id),
        instance=doors.instance,
        procfile=a.procfile,
        exposed=config.get("ExposedPorts"),
        prestart_path=prestart,
        env=a.env.run,
        networks=a.env.networks,
        proxy=doors.docker.bridge_gateway(),
    )


def _find_prestart(docker: EngineDoor, tag: str, config: dict[str, object]) -> str | None:
    workdir = str(config.get("WorkingDir") or "/")
    for candidate in PRESTART_CANDIDATES:
        path = candidate if candidate.startswith("/") else f"{workdir.rstrip('/')}/{candidate}"
        if docker.image_has_file(tag, path):
            return path
    return None


# release, start, health ------------------------------------------------------------------


def release(doors: Doors, a: Attempt) -> None:
    plan, dlog = a.need_plan(), a.dlog
    if not a.run_release:
        dlog.line("release command not run (a rollback or restart; --run-release runs it)")
        return
    if plan.release_command is None:
        dlog.line("no release command (Procfile release: or prestart.sh); skipped")
        return
    dlog.line(f"running {' '.join(plan.release_command)} in a one-off container")
    name = plan.release_container_name
    a.on_undo(name, _remove_container(doors, name))
    result = doors.docker.run_once(
        image=plan.image,
        command=plan.release_command,
        name=name,
        env=plan.env,
        labels={**plan.labels, "paas.process": "release"},
        volumes=plan.volumes,
        timeout=doors.settings.release_timeout,
        on_line=lambda line: dlog.line(f"  | {line}"),
        should_stop=a.should_stop,
        limits=limits(doors.settings, a.app),
        networks=plan.networks,
    )
    a.made_for_good(name)  # run_once removed it
    if result.cancelled:
        raise Cancelled("release")
    if result.timed_out:
        raise StepFailed("release", f"release command timed out after {doors.settings.release_timeout}s")
    if result.oom_killed:
        raise StepFailed(
            "release", f"release command was killed: out of memory ({memory_note(doors.settings, a.app)})"
        )
    if result.exit_code != 0:
        raise StepFailed("release", f"release command exited with status {result.exit_code}")


def start(doors: Doors, a: Attempt) -> None:
    """Every container of every process type; web ones each on a free host
    port. A rollback to the release being drained takes its containers back."""
    plan, started = a.need_plan(), []
    taken = _take_back(doors, a, plan)
    if taken is not None:
        started, plan = list(taken), replace(plan, processes=())
    for spec in plan.processes:
        if spec.process == "web":
            spec = _start_web(doors, a, spec, plan)
            a.dlog.line(
                f"started {spec.name} on {plan.host_ip}:{spec.host_port} (PORT={plan.container_port})"
            )
        else:
            _start_one(doors, a, spec, plan, host_port=None)
            a.dlog.line(f"started {spec.name} ({spec.process})")
        started.append(spec)
    a.plan = plan = replace(a.need_plan(), processes=tuple(started))
    doors.releases.update(
        a.dep_id,
        host_port=plan.web[0].host_port,
        upstreams=list(plan.upstreams),
        container_port=plan.container_port,
        containers=[p.name for p in plan.processes],
    )


def _take_back(doors: Doors, a: Attempt, plan: ReleasePlan) -> tuple[ProcessSpec, ...] | None:
    """A rollback (its release command not asked for) to the release whose
    containers are still waiting out their drain: the same image, env and
    process types, running a moment ago. They serve again, nothing starts:
    the processes with their names and ports, or None to start new ones."""
    if not isinstance(a.payload, RollbackPayload) or a.run_release or a.payload.source_version is None:
        return None
    base = doors.releases.version_of(a.app, a.payload.source_version)
    if base is None or not base.containers:
        return None
    # by process type and index: a release that took back containers lists another version's names
    pattern = re.compile(rf"paas-{re.escape(a.app.name)}-([a-z][a-z0-9_-]*)-v\d+-(\d+)")
    found = {
        (m[1], int(m[2])): name for name in base.containers if (m := pattern.fullmatch(name)) is not None
    }
    if len(found) != len(base.containers) or set(found) != {(p.process, p.index) for p in plan.processes}:
        return None  # scaled since (or a name paas does not give)
    names = {found[(p.process, p.index)]: p for p in plan.processes}
    if not set(names) <= set(doors.drainer.draining(a.app.name)):
        return None  # not draining: stopped, gone, or live
    specs = []
    for name, spec in names.items():
        info = doors.docker.container(name)
        if info is None or info.status != "running" or info.restarts or info.oom_killed:
            return None
        # its own release (by its label, the engine's) runs the image rolled back to: the row's list
        # of names is not taken on its word
        made_by = info.labels.get("paas.version", "")
        own = doors.releases.version_of(a.app, int(made_by)) if made_by.isdigit() else None
        if own is None or own.image != base.image or info.labels.get("paas.instance") != doors.instance:
            return None
        port = 0
        if spec.process == "web":
            host, _, published = (info.published or ("",))[0].rpartition(":")
            if host != plan.host_ip or not published.isdigit():
                return None
            port = int(published)
        specs.append(replace(spec, name=name, host_port=port))
    if not doors.drainer.take_back(names):
        return None  # its drain ended meanwhile
    app = a.app.name

    def hand_back() -> str:
        doors.drainer.retire(app, names, log_path=a.dlog.path)
        return f"handed {', '.join(names)} back to the drain"

    a.on_undo(f"v{base.version}'s containers", hand_back)
    a.dlog.line(f"took back {', '.join(names)} from the drain: v{base.version} still runs, nothing to start")
    return tuple(specs)  # in the plan's order


_port_lock = threading.Lock()  # one port choice at a time, across every pipeline thread


def _start_web(doors: Doors, a: Attempt, spec: ProcessSpec, plan: ReleasePlan) -> ProcessSpec:
    last_error = ""
    for _ in range(5):  # a port can be taken between our check and Docker's bind
        with _port_lock:
            port = free_port(doors.settings, doors.docker.published_ports())
            try:
                _start_one(doors, a, spec, plan, host_port=port)
            except EngineError as exc:
                if exc.kind is ErrorKind.port_taken:
                    last_error = str(exc)
                    continue
                raise
        return replace(spec, host_port=port)
    raise StepFailed("start", f"could not bind a free port: {last_error}")


def _start_one(
    doors: Doors, a: Attempt, spec: ProcessSpec, plan: ReleasePlan, *, host_port: int | None
) -> None:
    a.on_undo(spec.name, _remove_container(doors, spec.name))
    try:
        doors.docker.start(
            image=plan.image,
            name=spec.name,
            command=spec.command,
            env=plan.env,
            labels=spec.labels,
            container_port=plan.container_port,
            host_ip=plan.host_ip,
            host_port=host_port,
            volumes=plan.volumes,
            limits=limits(doors.settings, a.app),
            networks=plan.networks,
        )
    except EngineError:
        a.made_for_good(spec.name)  # the engine removed what it half-made
        raise


def free_port(settings: Settings, used: set[int]) -> int:
    """A port of PAAS_PORT_RANGE that Docker has not published and nothing binds."""
    ports = list(range(settings.port_range_start, settings.port_range_end + 1))
    random.shuffle(ports)
    for port in ports[:500]:
        if port in used:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise StepFailed("start", f"no free port in {settings.port_range_start}-{settings.port_range_end}")


def health(doors: Doors, a: Attempt) -> None:
    """Every web container passes the health check; then every other
    process is still running (a worker that crashed at start fails the deploy)."""
    plan, app, dlog = a.need_plan(), a.app, a.dlog
    for spec in plan.web:
        if len(plan.web) > 1:
            dlog.line(f"checking {spec.name}")
        check = HealthCheck(
            host=plan.host_ip,
            port=spec.host_port,
            path=app.health_path,
            interval=app.health_interval,
            timeout=app.health_timeout,
            retries=app.health_retries,
        )

        def alive(name: str = spec.name) -> str | None:
            if a.should_stop():
                raise Cancelled("health")
            return trouble(doors, app, name)

        try:
            doors.wait_healthy(check, alive=alive, on_line=dlog.line)
        except Unhealthy:
            _log_tail(doors, spec.name, dlog)
            raise
    for spec in plan.processes:
        if spec.process == "web":
            continue
        problem = trouble(doors, app, spec.name)
        if problem is not None:
            _log_tail(doors, spec.name, dlog)
            raise StepFailed("health", f"{spec.process} container {spec.name}: {problem}")
        dlog.line(f"{spec.name} is running")


def trouble(doors: Doors, app: App, name: str) -> str | None:
    """Why a container is not running well, or None."""
    info = doors.docker.container(name)
    if info is None:
        return "the container is gone"
    if info.oom_killed:
        return f"was killed: out of memory ({memory_note(doors.settings, app)})"
    if info.status in ("exited", "dead") or info.restarts > 0:
        said = "exited" if info.exit_code is None else f"exited with status {info.exit_code}"
        return f"{said} (restarted {info.restarts} times)" if info.restarts > 0 else said
    return None


def limits(settings: Settings, app: App) -> Limits:
    """The app's own limits, else the server's."""
    return Limits(
        memory=memory_bytes(app.memory or settings.app_memory),
        nano_cpus=int((app.cpus or settings.app_cpus) * 1e9),
        pids=app.pids or settings.app_pids,
    )


def memory_note(settings: Settings, app: App) -> str:
    if app.memory:
        return f"the limit is {app.memory}, the app's memory setting"
    return f"the limit is PAAS_APP_MEMORY={settings.app_memory}"


def _log_tail(doors: Doors, name: str, dlog: DeployLog) -> None:
    tail = doors.docker.logs_tail(name, 30)
    if tail:
        dlog.line(f"last lines of {name}'s output:")
        for line in tail:
            dlog.line(f"  | {line}")


def _remove_container(doors: Doors, name: str) -> Undo:
    def undo() -> str:
        doors.docker.stop_and_remove(name, timeout=0)
        return f"removed {name}"

    return undo


def _remove_image(doors: Doors, tag: str) -> Undo:
    def undo() -> str | None:
        return f"removed image {tag}" if doors.docker.remove_image(tag) else None

    return undo


# switch and retire -----------------------------------------------------------------------


FIRST_SITE_SPAN = 0.15  # seconds of right answers before a site new to nginx is called live


def switch(doors: Doors, a: Attempt) -> None:
    """Point nginx at the new containers and wait until it serves them; the
    previous site comes back if it never does. Live from here on."""
    plan, s = a.need_plan(), doors.settings
    spec = app_site_for(doors.db, s, a.app, version=a.version, upstreams=plan.upstreams)
    before = doors.nginx.current(a.app.name)
    doors.nginx.apply(a.app.name, render_site(spec, s))
    try:
        # a reload only signals nginx: wait until it serves us (a new hostname: a moment longer)
        doors.nginx.verify(spec, span=FIRST_SITE_SPAN if before is None else 0)
    except NginxError:
        doors.nginx.apply(a.app.name, before)  # put the previous site back
        raise
    a.switched = True
    a.undo.clear()  # what is live stays
    doors.releases.make_current(a.app.name, a.dep_id)
    a.dlog.line(f"nginx now routes {spec.hostnames[0]} to {', '.join(plan.upstreams)}")


def retire(doors: Doors, a: Attempt) -> None:
    """Hand the previous releases' containers to the drainer (agent/drainer.py),
    which stops them once drained while the next job may already run; prune
    images and release logs."""
    s, app, dlog = doors.settings, a.app.name, a.dlog
    live = {p.name for p in a.need_plan().processes}
    old = [c.name for c in doors.docker.containers(owned(doors.instance, app)) if c.name not in live]
    if old:
        doors.drainer.retire(app, old, log_path=dlog.path)
        dlog.line(
            f"draining {s.drain_seconds:g}s, then stopping {', '.join(old)} "
            "(apart from this job: the app's next one need not wait)"
        )
    prune_images(
        doors.db, doors.docker, instance=doors.instance, app=app, keep=s.keep_releases, on_line=dlog.line
    )
    gone = prune_release_logs(s.logs_dir, app, keep=s.keep_release_logs, live=a.version)
    if gone:
        dlog.line(f"removed the logs of {', '.join(f'v{v}' for v in gone)} (PAAS_KEEP_RELEASE_LOGS)")


STEPS: dict[str, Step] = {
    "fetch": fetch,
    "build": build,
    "release": release,
    "start": start,
    "health": health,
    "switch": switch,
    "retire": retire,
}
AFTER_SWITCH = ("retire",)  # the new release is live: trouble here is logged, not a failure


def steps_for(kind: str) -> tuple[str, ...]:
    """A deploy walks every step; a release, restart, scale or rollback reuses
    an image (``reuse_image``) and walks from release on."""
    names = tuple(STEPS)
    return names if kind == queue.DEPLOY else names[names.index("release") :]
