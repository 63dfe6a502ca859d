"""The runner: walks a job through its steps (agent/steps.py).

A deploy job walks fetch → build → release → start → health → switch →
retire; a release, restart, scale or rollback job reuses an image and walks
from release on. Each step is timed, recorded on the deployment row and
logged to the deployment's log file as it happens; a cancel is honoured
between steps and, through ``should_stop``, inside them. A failure before
``switch`` undoes, in reverse, what the attempt made (containers, image) and
leaves the live release serving, untouched. After ``switch`` the new release
is live; a problem while retiring the old one is logged, not a failed deploy.

Every version carries the env snapshot it runs with, opened in the agent's
memory only; the log names variables, never values.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from agent.deploylog import DeployLog
from agent.docker_engine import EngineError
from agent.doors import EngineDoor, SitesDoor, SourceDoor
from agent.drainer import Drainer
from agent.releases import Releases
from agent.retention import prune_images
from agent.steps import AFTER_SWITCH, STEPS, Attempt, Cancelled, Doors, disk_full, reuse_image, steps_for
from paas import queue
from paas.crypto import Keyring
from paas.env_snapshots import OpenedEnv
from paas.errors import PaasError, StepFailed
from paas.models import DeploymentStatus, Job
from paas.payloads import DatabasePayload, DeletePayload, DeployPayload
from paas.settings import Settings
from paas.trust import job_payload

__all__ = ["DeployResult", "Pipeline"]

log = logging.getLogger("paas.agent.pipeline")


@dataclass
class DeployResult:
    ok: bool
    deployment_id: int | None
    version: int | None
    error: str = ""
    cancelled: bool = False
    note: str = ""  # why a job that made no release ended well


class Pipeline:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Engine,
        docker: EngineDoor,
        nginx: SitesDoor,
        source: SourceDoor,
        instance: str,
        keyring: Keyring,
        cancel_poll_seconds: float = 0.5,
        drainer: Drainer | None = None,
        on_started: Callable[[Job, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_started = on_started
        self.cancel_poll_seconds = cancel_poll_seconds
        self.releases = Releases(db, keyring)
        self.source = source
        self.doors = Doors(
            settings=settings,
            db=db,
            docker=docker,
            nginx=nginx,
            source=source,
            releases=self.releases,
            instance=instance,
            drainer=drainer or Drainer(docker, settings),
        )

    def run(self, job: Job) -> DeployResult:
        """Run a deploy job (fetch and build a commit) or a release job (an
        image already built, with an env)."""
        asked = job_payload(job)
        if isinstance(asked, DeletePayload | DatabasePayload):
            raise TypeError(f"job {job.id} deletes {job.app_name!r}: the pipeline makes releases")
        if job.kind == queue.RELEASE and asked.trigger == "env":
            needed, live_id, live_version = self.releases.env_release_needed(job)
            if not needed:  # queued behind a deploy that failed, or that took this env already
                if live_id is None:
                    note = "nothing is live (the deploy before failed): the env applies at the next deploy"
                else:
                    note = f"v{live_version} already runs with this env"
                log.info("job %s of %s: %s", job.id, job.app_name, note)
                return DeployResult(True, live_id, live_version, note=note)
        new = self.releases.create(job)
        dep_id, version, app = new.dep_id, new.version, new.app
        if self.on_started is not None:
            try:
                self.on_started(job, dep_id)  # GitHub and notifications: a few rows, sent by others
            except Exception:  # noqa: BLE001  (telling people must never fail a deploy)
                log.exception("could not record that %s v%s started", app.name, version)
        assert job.id is not None
        build_dir = self.settings.builds_dir / f"{app.name}-v{version}"
        log_path = self.settings.release_log(app.name, version)
        with DeployLog(log_path, under=self.settings.data_dir) as dlog:
            attempt = Attempt(
                job,
                asked,
                app,
                dep_id,
                version,
                new.env,
                dlog,
                should_stop=self._cancel_probe(job.id),
                build_dir=build_dir,
            )
            what = "releasing" if job.kind == queue.RELEASE else "deploying"
            said = [asked.trigger]
            if isinstance(asked, DeployPayload):
                said += [asked.ref or "", asked.commit[:12]]
            about = " ".join(b for b in said if b)
            dlog.line(f"{what} {app.name} v{version} ({about})")
            _describe_env(new.env, dlog)
            try:
                if job.kind != queue.DEPLOY:
                    reuse_image(self.doors, attempt)
                for name in steps_for(job.kind):
                    self._step(name, attempt)
            except Exception as exc:  # noqa: BLE001  (a bug must still fail cleanly)
                return self._failed(attempt, exc)
            finally:
                shutil.rmtree(build_dir, ignore_errors=True)
            self.releases.finish(dep_id, DeploymentStatus.succeeded)
            dlog.line(f"v{version} is live")
        return DeployResult(True, dep_id, version)

    def _failed(self, a: Attempt, exc: Exception) -> DeployResult:
        """Undo what the attempt made and record how it ended: cancelled, a
        step's failure, or an internal error (a bug, logged with its traceback)."""
        dlog, dep_id, version = a.dlog, a.dep_id, a.version
        step = self.releases.get(dep_id).step or "fetch"
        if isinstance(exc, Cancelled) or (a.should_stop() and not a.switched):
            dlog.line(f"!!! cancelled during {step}")
            self._undo(a)
            self.releases.finish(
                dep_id, DeploymentStatus.cancelled, error=f"{step}: cancelled on request", step=step
            )
            dlog.line(f"v{version} cancelled; the previous release keeps serving")
            return DeployResult(False, dep_id, version, "cancelled on request", cancelled=True)
        full = disk_full(exc, self.settings)
        if full is not None:
            exc = StepFailed(exc.step if isinstance(exc, StepFailed) else step, full)
        elif not isinstance(exc, StepFailed):
            log.exception("unexpected error deploying %s v%s", a.app.name, version)
            exc = StepFailed(step, f"internal error: {exc!r}")
        dlog.line(f"!!! deploy failed at {exc.step}: {exc.reason}")
        self._undo(a)
        self.releases.finish(dep_id, DeploymentStatus.failed, error=str(exc), step=exc.step)
        dlog.line(f"v{version} failed; the previous release keeps serving")
        return DeployResult(False, dep_id, version, str(exc))

    def _step(self, name: str, a: Attempt) -> None:
        """Run one step: honour a cancel first, time it, and name it in any
        failure. After the switch, a failure is logged and the deploy goes on."""
        fatal = name not in AFTER_SWITCH
        if fatal and a.should_stop():
            raise Cancelled(name)
        self.releases.update(a.dep_id, step=name)
        a.dlog.line(f"==> {name}")
        started = time.monotonic()
        try:
            STEPS[name](self.doors, a)
        except Exception as exc:
            elapsed = time.monotonic() - started
            self.releases.record_timing(a.dep_id, name, elapsed)
            if not fatal:  # the new release is live whatever happens here
                log.exception("%s step of deployment %s", name, a.dep_id)
                a.dlog.line(f"<== {name} had a problem after {elapsed:.2f}s: {exc}")
                return
            if isinstance(exc, Cancelled) or not isinstance(exc, (PaasError, OSError)):
                raise  # a cancel, or a bug: run() fails it as an internal error
            if isinstance(exc, StepFailed) and exc.step != name:
                raise  # already explained, for another step
            a.dlog.line(f"<== {name} failed after {elapsed:.2f}s")
            if isinstance(exc, StepFailed):
                raise
            raise StepFailed(name, str(exc) or type(exc).__name__) from exc
        elapsed = time.monotonic() - started
        self.releases.record_timing(a.dep_id, name, elapsed)
        a.dlog.line(f"<== {name} ok in {elapsed:.2f}s")

    @staticmethod
    def _undo(a: Attempt) -> None:
        """Remove what a failed attempt made, newest first (nothing once it is live)."""
        if a.switched:
            return
        for what, how in reversed(list(a.undo.items())):
            try:
                line = how()
            except EngineError as exc:
                a.dlog.line(f"could not remove {what}: {exc}")
                continue
            if line:
                a.dlog.line(line)
        a.undo.clear()

    def _cancel_probe(self, job_id: int) -> Callable[[], bool]:
        """Whether ``paas cancel`` asked this job to stop; reads the database
        at most every ``cancel_poll_seconds``, and stays true once it has seen the request."""
        seen = {"at": float("-inf"), "cancel": False}

        def probe() -> bool:
            if not seen["cancel"] and time.monotonic() - float(seen["at"]) >= self.cancel_poll_seconds:
                seen["at"] = time.monotonic()
                seen["cancel"] = self.releases.cancel_requested(job_id)
            return bool(seen["cancel"])

        return probe

    def prune_images(self, app: str) -> None:
        """The scheduled clean-up's retention pass for one app (agent/retention.py)."""
        d = self.doors
        prune_images(d.db, d.docker, instance=d.instance, app=app, keep=self.settings.keep_releases)


def _describe_env(env: OpenedEnv, dlog: DeployLog) -> None:
    """Names only, never values."""
    if not env.run and not env.build_args and not env.build_secrets:
        dlog.line("env: none set")
        return
    shown = [f"{k} (secret)" if k in env.secret_keys else k for k in sorted(env.run)]
    dlog.line(f"env: {', '.join(shown) or 'none'}")
    if env.build_args:
        dlog.line(f"build args: {', '.join(sorted(env.build_args))}")
    if env.build_secrets:
        dlog.line(f"build secrets: {', '.join(sorted(env.build_secrets))}")
