"""The deploy pipeline: fetch → build → release → start → health → switch → retire.

Each step is timed, recorded on the deployment row and logged to the
deployment's log file as it happens. A failure before ``switch`` undoes what
the attempt created (containers, image) and leaves the live release serving,
untouched. After ``switch`` the new release is live; a problem while retiring
the old one is logged, not a failed deploy.

A release job (an env change) makes a new version of the live release's
image: no fetch, no build, then the same release → retire steps. Every
version carries the env snapshot it runs with, opened in the agent's memory
only; the log names variables, never values.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from agent.certs import site_hosts
from agent.deploylog import DeployLog
from agent.docker_engine import DockerEngine, EngineError, Limits
from agent.health import HealthCheck, wait_healthy
from agent.nginx import NginxError, NginxSites, app_site, render_site
from agent.plan import PRESTART_CANDIDATES, ProcessSpec, ReleasePlan, image_tag, labels_for, make_plan, owned
from agent.source import SourceCache, SourceError
from paas import queue
from paas.buildpack import GENERATED_DOCKERFILE, GeneratedBuild, context_file, for_app
from paas.crypto import Keyring
from paas.db import hold_key_lock, session_scope
from paas.dockerfile import image_references
from paas.envvars import OpenedEnv, open_snapshot, snapshot_env
from paas.errors import DeployError, InvalidInput
from paas.models import App, Deployment, DeploymentStatus, Job, utcnow
from paas.procfile import formation, parse_procfile
from paas.services import find_release, live_release
from paas.settings import Settings, memory_bytes
from paas.trust import check_app, check_job, check_release

__all__ = ["DeployResult", "Pipeline"]

log = logging.getLogger("paas.agent.pipeline")

DEFAULT_DOCKERFILE = "Dockerfile"
STEPS = ("fetch", "build", "release", "start", "health", "switch", "retire")
# what a step may fail with, for reasons of the app or the machine (not a bug)
EXPECTED = (EngineError, SourceError, NginxError, InvalidInput, RuntimeError, OSError)


@dataclass
class DeployResult:
    ok: bool
    deployment_id: int
    version: int
    error: str = ""
    cancelled: bool = False


class Cancelled(Exception):
    """``paas cancel`` asked this deploy to stop."""


@dataclass
class _Attempt:
    """One run of a job: what it works on, and what it created, so that a
    failure can remove exactly that."""

    job: Job
    app: App
    dep_id: int
    version: int
    env: OpenedEnv
    dlog: DeployLog
    should_stop: Callable[[], bool]
    image: str | None = None
    containers: list[str] = field(default_factory=list)
    switched: bool = False


class Pipeline:
    _port_lock = threading.Lock()

    def __init__(
        self,
        *,
        settings: Settings,
        db: Engine,
        docker: DockerEngine,
        nginx: NginxSites,
        source: SourceCache,
        instance: str,
        keyring: Keyring,
    ) -> None:
        self.settings = settings
        self.keyring = keyring
        self.db = db
        self.docker = docker
        self.nginx = nginx
        self.source = source
        self.instance = instance

    # the deploy ------------------------------------------------------------------

    def deploy(self, job: Job) -> DeployResult:
        """Run a deploy job (fetch and build a commit) or a release job (the
        live image again, with the app's current env)."""
        check_job(job)
        dep_id, version, app, env = self._new_deployment(job)
        assert job.id is not None
        build_dir = self.settings.builds_dir / f"{app.name}-v{version}"
        log_path = self.settings.release_log(app.name, version)
        with DeployLog(log_path, under=self.settings.data_dir) as dlog:
            attempt = _Attempt(job, app, dep_id, version, env, dlog, should_stop=self._cancel_probe(job.id))
            what = "releasing" if job.kind == queue.RELEASE else "deploying"
            p = job.payload
            about = " ".join(
                str(b) for b in (p.get("trigger"), p.get("ref"), str(p.get("commit", ""))[:12]) if b
            )
            dlog.line(f"{what} {app.name} v{version} ({about})")
            self._describe_env(env, dlog)
            try:
                if job.kind in (queue.RELEASE, queue.ROLLBACK):
                    self._run_release(attempt)
                else:
                    self._run_steps(attempt, build_dir)
            except Exception as exc:  # noqa: BLE001  (a bug must still fail cleanly)
                if isinstance(exc, Cancelled) or (attempt.should_stop() and not attempt.switched):
                    step = self._get(dep_id).step or "fetch"
                    dlog.line(f"!!! cancelled during {step}")
                    self._undo(attempt, dlog)
                    self._finish(dep_id, DeploymentStatus.cancelled, error=f"{step}: cancelled on request")
                    dlog.line(f"v{version} cancelled; the previous release keeps serving")
                    return DeployResult(False, dep_id, version, "cancelled on request", cancelled=True)
                if not isinstance(exc, DeployError):
                    log.exception("unexpected error deploying %s v%s", app.name, version)
                    exc = DeployError(self._get(dep_id).step or "fetch", f"internal error: {exc!r}")
                dlog.line(f"!!! deploy failed at {exc.step}: {exc.reason}")
                self._undo(attempt, dlog)
                self._finish(dep_id, DeploymentStatus.failed, error=str(exc))
                dlog.line(f"v{version} failed; the previous release keeps serving")
                return DeployResult(False, dep_id, version, str(exc))
            finally:
                shutil.rmtree(build_dir, ignore_errors=True)
            self._finish(dep_id, DeploymentStatus.succeeded)
            dlog.line(f"v{version} is live")
        return DeployResult(True, dep_id, version)

    def _run_steps(self, attempt: _Attempt, build_dir: Path) -> None:
        s = self.settings
        job, app, dep_id, version, env, dlog = (
            attempt.job,
            attempt.app,
            attempt.dep_id,
            attempt.version,
            attempt.env,
            attempt.dlog,
        )
        with self._step(dep_id, "fetch", dlog, attempt=attempt):
            info = self.source.fetch(
                app=app.name,
                url=app.repo_url,
                ref=str(job.payload.get("ref") or app.branch),
                commit=str(job.payload.get("commit") or ""),
                on_line=dlog.line,
            )
            self.source.export(app=app.name, commit=info.sha, dest=build_dir)
            self._update(dep_id, commit=info.sha, commit_message=info.message[:2000])
        context = build_dir / app.source_dir if app.source_dir else build_dir
        tag = image_tag(app.name, version)
        with self._step(dep_id, "build", dlog, attempt=attempt):
            procfile = self._procfile(context)
            dockerfile = self._dockerfile(app, context, procfile, info.sha, dlog)
            labels = labels_for(instance=self.instance, app=app.name, deployment_id=dep_id, version=version)
            self._check_images_read(app.name, context, dockerfile, env.build_args)
            attempt.image = tag
            self.docker.build(
                context=context,
                dockerfile=dockerfile,
                tag=tag,
                labels=labels,
                on_line=dlog.line,
                timeout=s.build_timeout,
                network=s.build_network,
                buildargs=env.build_args,
                should_stop=attempt.should_stop,
                memory=memory_bytes(s.build_memory),
            )
            self._update(dep_id, image=tag, procfile=procfile)
            plan = self._plan(attempt, tag, procfile)
        self._roll_out(attempt, plan)

    def _choose_dockerfile(
        self, app: App, context: Path, procfile: dict[str, str], where: str
    ) -> GeneratedBuild | None:
        """None when the build context has the app's Dockerfile; the one
        generated for a Python app when it names none of its own."""
        if context_file(context, app.dockerfile) is not None:
            return None
        if app.dockerfile != DEFAULT_DOCKERFILE:
            raise InvalidInput(f"no {app.dockerfile} in {where}")
        return for_app(context, app=app, settings=self.settings, procfile=procfile)

    def _dockerfile(
        self, app: App, context: Path, procfile: dict[str, str], sha: str, dlog: DeployLog
    ) -> str:
        """The Dockerfile to build with, a generated one written into the
        build context and the build log."""
        where = f"{app.source_dir or 'the repository root'} at {sha[:12]}"
        generated = self._choose_dockerfile(app, context, procfile, where)
        if generated is None:
            return app.dockerfile
        path = context / GENERATED_DOCKERFILE
        if path.is_symlink() or path.exists():
            path.unlink()  # the repository's own file of that name, or a link planted to redirect us
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(generated.dockerfile)
        path.chmod(0o644)  # like the checked-out source, whatever the agent's umask
        dlog.line(f"no Dockerfile in {where}: building a Python app from {generated.plan.installer_label}")
        for note in generated.plan.notes:
            dlog.line(note)
        dlog.line(f"generated Dockerfile (`paas build-plan {app.name}` prints it):")
        for line in generated.dockerfile.splitlines():
            dlog.line(f"  | {line}")
        return GENERATED_DOCKERFILE

    def _check_images_read(self, app: str, context: Path, dockerfile: str, buildargs: dict[str, str]) -> None:
        """A build may read public base images and its own app's images: not
        another app's (its code and build-time values), nor an untagged image
        (another build's intermediate layers) named by id."""
        path = context_file(context, dockerfile)
        if path is None:
            raise InvalidInput(f"{dockerfile} is not a file inside the build context")
        text = path.read_text(encoding="utf-8", errors="replace")
        for ref in image_references(text, buildargs):
            known = self.docker.image_names_and_labels(ref)
            if known is None:
                continue  # not on this engine: a public image the engine may pull
            names, labels = known
            owner = labels.get("paas.app")
            if owner is not None and owner != app:
                raise InvalidInput(
                    f"the Dockerfile reads {ref!r}, an image of another app: that is not allowed"
                )
            if not names:
                raise InvalidInput(
                    f"the Dockerfile reads {ref!r}, an untagged image: name a base image by its tag"
                )

    def build_plan(self, app_name: str, *, ref: str = "", commit: str = "") -> dict[str, object]:
        """What a deploy of ``ref`` (default: the app's branch) would build:
        the app's own Dockerfile, or the one generated for it. Fetches, never builds."""
        with session_scope(self.db) as session:
            app = session.exec(select(App).where(App.name == app_name)).first()
            if app is None:
                raise InvalidInput(f"no app named {app_name!r}")
            check_app(app)
            session.expunge(app)
        info = self.source.fetch(
            app=app.name, url=app.repo_url, ref=ref or app.branch, commit=commit, on_line=lambda _l: None
        )
        self.settings.builds_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"plan-{app.name}-", dir=self.settings.builds_dir) as tmp:
            root = Path(tmp) / "src"
            self.source.export(app=app.name, commit=info.sha, dest=root)
            context = root / app.source_dir if app.source_dir else root
            procfile = self._procfile(context)
            where = f"{app.source_dir or 'the repository root'} at {info.sha[:12]}"
            generated = self._choose_dockerfile(app, context, procfile, where)
            if generated is None:
                found = context_file(context, app.dockerfile)
                assert found is not None  # _choose_dockerfile saw it
                text = found.read_text(encoding="utf-8", errors="replace")
        if generated is None:
            summary, notes = f"the repository's {app.dockerfile}", []
        else:
            text, notes = generated.dockerfile, list(generated.plan.notes)
            summary = f"generated for a Python app from {generated.plan.installer_label}"
        return {
            "commit": info.sha,
            "generated": generated is not None,
            "summary": summary,
            "notes": notes,
            "dockerfile": text,
            "procfile": procfile,
        }

    def _run_release(self, attempt: _Attempt) -> None:
        """An image already built (the live one, or a rollback's) with an env:
        no fetch, no build."""
        app, dep = attempt.app, self._get(attempt.dep_id)
        attempt.dlog.line(f"reusing image {dep.image} (no build)")
        if self.docker.image_id(dep.image) is None:
            raise DeployError(
                "release",
                f"image {dep.image} is gone; rebuild its commit with "
                f"`paas deploy {app.name} --commit {dep.commit[:12]}`",
            )
        run_release = bool(attempt.job.payload.get("run_release", True))
        plan = self._plan(attempt, dep.image, dep.procfile, find_prestart=run_release)
        self._roll_out(attempt, plan, run_release=run_release)

    def _plan(
        self, attempt: _Attempt, image: str, procfile: dict[str, str], *, find_prestart: bool = True
    ) -> ReleasePlan:
        config = self.docker.image_config(image)
        # looking for prestart.sh creates containers: skip it when no release runs
        prestart = None if "release" in procfile or not find_prestart else self._find_prestart(image, config)
        total = sum(formation(procfile, attempt.app.scale).values())
        if total > self.settings.max_containers_per_app:
            raise DeployError(
                "start",
                f"the Procfile and scale ask for {total} containers; an app may run at most "
                f"{self.settings.max_containers_per_app} (PAAS_MAX_CONTAINERS_PER_APP)",
            )
        return make_plan(
            app=attempt.app,
            deployment=self._get(attempt.dep_id),
            instance=self.instance,
            procfile=procfile,
            exposed=config.get("ExposedPorts"),
            prestart_path=prestart,
            env=attempt.env.run,
        )

    def _roll_out(self, attempt: _Attempt, plan: ReleasePlan, *, run_release: bool = True) -> None:
        """release → start → health → switch → retire, shared by deploys and releases."""
        s = self.settings
        app, dep_id, version, dlog = attempt.app, attempt.dep_id, attempt.version, attempt.dlog
        with self._step(dep_id, "release", dlog, attempt=attempt):
            if run_release:
                self._release(plan, attempt, dlog)
            else:
                dlog.line("release command not run (a rollback or restart; --run-release runs it)")

        with self._step(dep_id, "start", dlog, attempt=attempt):
            plan = self._start(plan, attempt, dlog)
            self._update(
                dep_id,
                host_port=plan.web[0].host_port,
                upstreams=list(plan.upstreams),
                container_port=plan.container_port,
                containers=[p.name for p in plan.processes],
            )

        with self._step(dep_id, "health", dlog, attempt=attempt):
            self._health(app, plan, dlog, attempt.should_stop)

        with self._step(dep_id, "switch", dlog, attempt=attempt):
            with session_scope(self.db) as session:
                hosts = site_hosts(session, app.id)
            spec = app_site(
                s, app=app.name, version=version, upstreams=plan.upstreams, hosts=hosts, hsts=app.hsts
            )
            before = self.nginx.current(app.name)
            self.nginx.apply(app.name, render_site(spec, s))
            try:
                self.nginx.verify(spec)  # a reload only signals nginx: wait until it serves us
            except NginxError:
                self.nginx.apply(app.name, before)  # put the previous site back
                raise
            attempt.switched = True
            self._make_current(app.name, dep_id)
            dlog.line(f"nginx now routes {spec.hostnames[0]} to {', '.join(plan.upstreams)}")

        # Live from here on: trouble while retiring is logged, not a failure.
        with self._step(dep_id, "retire", dlog, fatal=False):
            self._retire(app.name, dep_id, dlog)

    # steps ---------------------------------------------------------------------

    @staticmethod
    def _describe_env(env: OpenedEnv, dlog: DeployLog) -> None:
        """Names only, never values."""
        if not env.run and not env.build_args:
            dlog.line("env: none set")
            return
        shown = [f"{k} (secret)" if k in env.secret_keys else k for k in sorted(env.run)]
        dlog.line(f"env: {', '.join(shown) or 'none'}")
        if env.build_args:
            dlog.line(f"build args: {', '.join(sorted(env.build_args))}")

    def _procfile(self, context: Path) -> dict[str, str]:
        path = context_file(context, "Procfile")
        if path is None:
            return {}
        try:
            return parse_procfile(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise InvalidInput("Procfile is not UTF-8 text") from exc

    def _find_prestart(self, tag: str, config: dict[str, object]) -> str | None:
        workdir = str(config.get("WorkingDir") or "/")
        for candidate in PRESTART_CANDIDATES:
            path = candidate if candidate.startswith("/") else f"{workdir.rstrip('/')}/{candidate}"
            if self.docker.image_has_file(tag, path):
                return path
        return None

    def _release(self, plan: ReleasePlan, attempt: _Attempt, dlog: DeployLog) -> None:
        if plan.release_command is None:
            dlog.line("no release command (Procfile release: or prestart.sh); skipped")
            return
        dlog.line(f"running {' '.join(plan.release_command)} in a one-off container")
        attempt.containers.append(plan.release_container_name)
        result = self.docker.run_once(
            image=plan.image,
            command=plan.release_command,
            name=plan.release_container_name,
            env=plan.env,
            labels={**plan.labels, "paas.process": "release"},
            volumes=plan.volumes,
            timeout=self.settings.release_timeout,
            on_line=lambda line: dlog.line(f"  | {line}"),
            should_stop=attempt.should_stop,
            limits=self._limits(attempt.app),
        )
        attempt.containers.remove(plan.release_container_name)  # run_once removed it
        if result.cancelled:
            raise Cancelled("release")
        if result.timed_out:
            raise RuntimeError(f"release command timed out after {self.settings.release_timeout}s")
        if result.oom_killed:
            raise RuntimeError(
                f"release command was killed: out of memory ({self._memory_note(attempt.app)})"
            )
        if result.exit_code != 0:
            raise RuntimeError(f"release command exited with status {result.exit_code}")

    def _start(self, plan: ReleasePlan, attempt: _Attempt, dlog: DeployLog) -> ReleasePlan:
        """Every container of every process type; web ones each on a free host port."""
        started = []
        for spec in plan.processes:
            if spec.process == "web":
                spec = self._start_web(spec, plan, attempt)
                dlog.line(
                    f"started {spec.name} on {plan.host_ip}:{spec.host_port} (PORT={plan.container_port})"
                )
            else:
                self._start_one(spec, plan, attempt, host_port=None)
                dlog.line(f"started {spec.name} ({spec.process})")
            started.append(spec)
        return replace(plan, processes=tuple(started))

    def _start_web(self, spec: ProcessSpec, plan: ReleasePlan, attempt: _Attempt) -> ProcessSpec:
        last_error = ""
        for _ in range(5):  # a port can be taken between our check and Docker's bind
            with self._port_lock:
                port = self._free_port()
                try:
                    self._start_one(spec, plan, attempt, host_port=port)
                except EngineError as exc:
                    last_error = str(exc)
                    if "port is already allocated" in last_error or "address already in use" in last_error:
                        continue
                    raise
            return replace(spec, host_port=port)
        raise RuntimeError(f"could not bind a free port: {last_error}")

    def _start_one(
        self, spec: ProcessSpec, plan: ReleasePlan, attempt: _Attempt, *, host_port: int | None
    ) -> None:
        attempt.containers.append(spec.name)
        try:
            self.docker.start(
                image=plan.image,
                name=spec.name,
                command=spec.command,
                env=plan.env,
                labels=spec.labels,
                container_port=plan.container_port,
                host_ip=plan.host_ip,
                host_port=host_port,
                volumes=plan.volumes,
                limits=self._limits(attempt.app),
            )
        except EngineError:
            attempt.containers.remove(spec.name)  # the engine removed what it half-made
            raise

    def _free_port(self) -> int:
        s = self.settings
        used = self.docker.published_ports()
        ports = list(range(s.port_range_start, s.port_range_end + 1))
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
        raise RuntimeError(f"no free port in {s.port_range_start}-{s.port_range_end}")

    def _health(self, app: App, plan: ReleasePlan, dlog: DeployLog, should_stop: Callable[[], bool]) -> None:
        """Every web container passes the health check; then every other
        process is still running (a worker that crashed at start fails the deploy)."""
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
                if should_stop():
                    raise Cancelled("health")
                return self._trouble(app, name)

            try:
                wait_healthy(check, alive=alive, on_line=dlog.line)
            except RuntimeError:
                self._log_tail(spec.name, dlog)
                raise
        for spec in plan.processes:
            if spec.process == "web":
                continue
            trouble = self._trouble(app, spec.name)
            if trouble is not None:
                self._log_tail(spec.name, dlog)
                raise RuntimeError(f"{spec.process} container {spec.name}: {trouble}")
            dlog.line(f"{spec.name} is running")

    def _trouble(self, app: App, name: str) -> str | None:
        info = self.docker.container(name)
        if info is None:
            return "the container is gone"
        if info.oom_killed:
            return f"was killed: out of memory ({self._memory_note(app)})"
        if info.status in ("exited", "dead") or info.restarts > 0:
            return f"exited with status {info.exit_code}"
        return None

    def _limits(self, app: App) -> Limits:
        """The app's own limits, else the server's."""
        s = self.settings
        return Limits(
            memory=memory_bytes(app.memory or s.app_memory),
            nano_cpus=int((app.cpus or s.app_cpus) * 1e9),
            pids=app.pids or s.app_pids,
        )

    def _memory_note(self, app: App) -> str:
        if app.memory:
            return f"the limit is {app.memory}, the app's memory setting"
        return f"the limit is PAAS_APP_MEMORY={self.settings.app_memory}"

    def _log_tail(self, name: str, dlog: DeployLog) -> None:
        tail = self.docker.logs_tail(name, 30)
        if tail:
            dlog.line(f"last lines of {name}'s output:")
            for line in tail:
                dlog.line(f"  | {line}")

    def _retire(self, app: str, dep_id: int, dlog: DeployLog) -> None:
        old = [
            c
            for c in self.docker.containers(owned(self.instance, app))
            if c.labels.get("paas.deployment") != str(dep_id)
        ]
        if old:
            dlog.line(
                f"draining {self.settings.drain_seconds:g}s before stopping " + ", ".join(c.name for c in old)
            )
            time.sleep(self.settings.drain_seconds)
            for c in old:
                self.docker.stop_and_remove(c.name, timeout=self.settings.stop_timeout)
                dlog.line(f"stopped {c.name}")
        self.prune_images(app, dlog=dlog)

    def prune_images(self, app: str, *, dlog: DeployLog | None = None) -> None:
        """Keep the images of the last N successful releases (and of the live
        one, and of any deploy in flight); remove the rest. A release reuses
        its base's image, so an image is kept while any kept release names it."""
        with session_scope(self.db) as session:
            app_row = session.exec(select(App).where(App.name == app)).one()
            kept = list(
                session.exec(
                    select(Deployment)
                    .where(Deployment.app_id == app_row.id, Deployment.status == DeploymentStatus.succeeded)
                    .order_by(col(Deployment.version).desc())
                    .limit(self.settings.keep_releases)
                ).all()
            )
            if app_row.current_deployment_id:
                current = session.get(Deployment, app_row.current_deployment_id)
                if current is not None:
                    kept.append(current)
            # a deploy in flight (the scheduled clean-up may run beside it)
            kept += session.exec(
                select(Deployment).where(
                    Deployment.app_id == app_row.id, Deployment.status == DeploymentStatus.running
                )
            ).all()
            keep_ids = {str(d.id) for d in kept}
            keep_tags = {d.image for d in kept if d.image}
        for image_id, tags, labels in self.docker.images(owned(self.instance, app)):
            if labels.get("paas.deployment") in keep_ids or keep_tags.intersection(tags):
                continue
            removed = [ref for ref in tags or [image_id] if self.docker.remove_image(ref)]
            if removed:
                self._mark_pruned(app_row.id, removed)
            for ref in removed:
                if dlog:
                    dlog.line(f"removed old image {ref}")

    def _mark_pruned(self, app_id: int | None, refs: list[str]) -> None:
        """Releases naming a removed image can no longer be rolled back to."""
        with session_scope(self.db) as session:
            for dep in session.exec(
                select(Deployment).where(Deployment.app_id == app_id, col(Deployment.image).in_(refs))
            ).all():
                dep.image_pruned = True
                session.add(dep)

    def _undo(self, attempt: _Attempt, dlog: DeployLog) -> None:
        if attempt.switched:
            return
        for name in attempt.containers:
            try:
                self.docker.stop_and_remove(name, timeout=0)
                dlog.line(f"removed {name}")
            except EngineError as exc:
                dlog.line(f"could not remove {name}: {exc}")
        if attempt.image:
            try:
                if self.docker.remove_image(attempt.image):
                    dlog.line(f"removed image {attempt.image}")
            except EngineError as exc:
                dlog.line(f"could not remove image {attempt.image}: {exc}")

    # bookkeeping -----------------------------------------------------------------

    @contextlib.contextmanager
    def _step(
        self, dep_id: int, name: str, dlog: DeployLog, *, fatal: bool = True, attempt: _Attempt | None = None
    ) -> Iterator[None]:
        if attempt is not None and attempt.should_stop():
            raise Cancelled(name)
        self._update(dep_id, step=name)
        dlog.line(f"==> {name}")
        started = time.monotonic()
        try:
            yield
        except Exception as exc:
            elapsed = time.monotonic() - started
            self._record_timing(dep_id, name, elapsed)
            if not fatal:  # after the switch: the new release is live whatever happens here
                log.exception("%s step of deployment %s", name, dep_id)
                dlog.line(f"<== {name} had a problem after {elapsed:.2f}s: {exc}")
                return
            if isinstance(exc, DeployError) or not isinstance(exc, EXPECTED):
                raise  # already explained, or a bug: deploy() fails it as an internal error
            dlog.line(f"<== {name} failed after {elapsed:.2f}s")
            raise DeployError(name, str(exc) or type(exc).__name__) from exc
        elapsed = time.monotonic() - started
        self._record_timing(dep_id, name, elapsed)
        dlog.line(f"<== {name} ok in {elapsed:.2f}s")

    def _cancel_probe(self, job_id: int) -> Callable[[], bool]:
        """Whether ``paas cancel`` asked this job to stop; reads the database
        at most twice a second, and stays true once it has seen the request."""
        seen = {"at": float("-inf"), "cancel": False}

        def probe() -> bool:
            if not seen["cancel"] and time.monotonic() - float(seen["at"]) >= 0.5:
                seen["at"] = time.monotonic()
                with session_scope(self.db) as session:
                    row = session.get(Job, job_id)
                    seen["cancel"] = bool(row is not None and row.cancel_requested)
            return bool(seen["cancel"])

        return probe

    def _new_deployment(self, job: Job) -> tuple[int, int, App, OpenedEnv]:
        """Create vN with the app's env snapshot, opened in the same transaction
        (so key rotation cannot slip between copying and opening)."""
        with session_scope(self.db) as session:
            hold_key_lock(session)
            app = session.get(App, job.app_id) if job.app_id else None
            if app is None or app.id is None:
                raise DeployError("fetch", f"app {job.app_name!r} no longer exists")
            check_app(app)
            latest = session.exec(
                select(func.max(Deployment.version)).where(Deployment.app_id == app.id)
            ).one()
            snapshot = snapshot_env(session, app)
            dep = Deployment(
                app_id=app.id,
                version=(latest or 0) + 1,
                ref=str(job.payload.get("ref", "")),
                commit=str(job.payload.get("commit", "")),
                commit_message=str(job.payload.get("message", ""))[:2000],
                trigger=str(job.payload.get("trigger", "")),
                created_by=str(job.payload.get("actor", "")),
                job_id=job.id,
                env=snapshot,
                env_version=app.env_version,
            )
            if job.kind in (queue.RELEASE, queue.ROLLBACK):
                base = self._base_release(session, app, job)
                dep.ref, dep.commit, dep.commit_message = base.ref, base.commit, base.commit_message
                dep.image, dep.procfile = base.image, dict(base.procfile)
                if "source_version" in job.payload:  # rollback or restart: that release's own env
                    snapshot = list(base.env)
                    dep.env = snapshot
                    dep.env_version = int(job.payload.get("env_version", base.env_version))
                if job.kind == queue.ROLLBACK:
                    dep.rollback_of = base.version
            session.add(dep)
            session.flush()
            row = session.get(Job, job.id)
            if row is not None:
                row.deployment_id = dep.id
                session.add(row)
            assert dep.id is not None
            env = open_snapshot(snapshot, self.keyring)
            session.expunge(app)
            return dep.id, dep.version, app, env

    @staticmethod
    def _base_release(session: Session, app: App, job: Job) -> Deployment:
        """The release whose image (and, for a rollback, env) a release job reuses."""
        source = job.payload.get("source_version")
        base = live_release(session, app) if source is None else find_release(session, app, int(source))
        if base is None or not base.image:
            what = f"v{source}" if source is not None else "a live release"
            raise DeployError("release", f"app {app.name!r} has no {what} to reuse")
        return check_release(base, app=app.name)

    def _get(self, dep_id: int) -> Deployment:
        with session_scope(self.db) as session:
            dep = session.get(Deployment, dep_id)
            assert dep is not None
            session.expunge(dep)
            return dep

    def _update(self, dep_id: int, **values: object) -> None:
        with session_scope(self.db) as session:
            dep = session.get(Deployment, dep_id)
            if dep is None:
                return
            for key, value in values.items():
                setattr(dep, key, value)
            session.add(dep)

    def _record_timing(self, dep_id: int, step: str, seconds: float) -> None:
        with session_scope(self.db) as session:
            dep = session.get(Deployment, dep_id)
            if dep is not None:
                dep.timings = {**dep.timings, step: round(seconds, 3)}
                session.add(dep)

    def _finish(self, dep_id: int, status: DeploymentStatus, *, error: str = "") -> None:
        self._update(dep_id, status=status, error=error, finished_at=utcnow())

    def _make_current(self, app_name: str, dep_id: int) -> None:
        """The release is live: make it the app's current one and mark it
        succeeded, in one transaction (retire then counts it among the kept)."""
        with session_scope(self.db) as session:
            app = session.exec(select(App).where(App.name == app_name)).one()
            app.current_deployment_id = dep_id
            session.add(app)
            dep = session.get(Deployment, dep_id)
            if dep is not None:
                dep.status = DeploymentStatus.succeeded
                session.add(dep)
