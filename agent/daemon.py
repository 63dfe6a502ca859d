"""The agent daemon: claims jobs, runs them in a small thread pool (one job per
app at a time, up to ``PAAS_AGENT_WORKERS`` apps at once), keeps their leases
alive, fails jobs whose agent died, and reconciles Docker and nginx with the
database at start.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine
from sqlmodel import col, select

from agent.build_plan import BuildPlanner
from agent.buildkit import ID_KEY_FILE
from agent.certs import CertManager
from agent.databases import Databases
from agent.docker_engine import ContainerInfo, DockerEngine, EngineError
from agent.drainer import Drainer
from agent.nginx import NginxError, NginxSites
from agent.pipeline import Pipeline
from agent.plan import in_release, owned
from agent.retention import prune_release_logs
from agent.sites import Sites
from agent.socket_api import LiveServer, create_live_app
from agent.source import SourceCache
from agent.tell.crashes import CrashWatch
from agent.tell.say import Ended
from agent.tell.teller import Teller
from paas import queue
from paas.crypto import Keyring
from paas.db import make_engine, session_scope
from paas.errors import PaasError
from paas.instance import instance_id
from paas.models import App, Deployment, DeploymentStatus, Job, JobState, utcnow
from paas.services import live_release
from paas.settings import Settings, memory_bytes
from paas.trust import UntrustedRow, check_app, check_app_name, check_job, check_release

__all__ = ["Agent"]

log = logging.getLogger("paas.agent")


class Agent:
    def __init__(
        self,
        settings: Settings,
        *,
        db: Engine | None = None,
        docker: DockerEngine | None = None,
        nginx: NginxSites | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        self.settings = settings
        self.db = db or make_engine(settings)
        self.docker = docker or DockerEngine()
        self.nginx = nginx or NginxSites(settings)
        self.instance = instance_id(settings.data_dir)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        source = SourceCache(settings.repos_dir, allow_local=settings.allow_local_repos)
        keyring = keyring or Keyring(settings.keys_dir, private=True)
        self.teller = Teller(settings, self.db, keyring)
        self.drainer = Drainer(self.docker, settings, needed=self._needed)
        self.pipeline = Pipeline(
            settings=settings,
            db=self.db,
            docker=self.docker,
            nginx=self.nginx,
            source=source,
            instance=self.instance,
            keyring=keyring,
            drainer=self.drainer,
            on_started=self.teller.started,
        )
        self.databases = Databases(settings, self.db, self.docker, keyring, self.instance)
        self.pipeline.releases.databases = self.databases
        self.build_plan = BuildPlanner(settings, self.db, source)
        self.sites = Sites(settings, self.db, self.nginx, self.docker, self.instance)
        self.certs = CertManager(settings, self.db, self.nginx, self.sites, tell=self.teller.event)
        self._disk_low = False
        self._running: dict[int, Future[None]] = {}
        self._last_recover = float("-inf")
        self._lock = threading.Lock()
        self._wake = threading.Event()

    # main loop ---------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        log.info("agent %s starting (instance %s)", self.owner, self.instance)
        self.docker.ping()
        self.reconcile()
        beat = threading.Thread(target=self._heartbeat_loop, args=(stop,), daemon=True, name="heartbeat")
        beat.start()
        scheduler = BackgroundScheduler(timezone="UTC")

        def every(seconds: float, job: Callable[[], None], name: str, *, at_start: bool = True) -> None:
            first = {"next_run_time": utcnow()} if at_start else {}  # once at start too
            scheduler.add_job(
                _then_release_heap(job),
                "interval",
                seconds=seconds,
                id=name,
                max_instances=1,
                coalesce=True,
                **first,
            )

        every(self.settings.cleanup_interval_seconds, self.cleanup, "cleanup")
        every(self.settings.cert_check_seconds, self.certs.run_once, "certificates")
        every(self.settings.nginx_check_seconds, self.watch_nginx, "nginx", at_start=False)
        every(self.settings.disk_check_seconds, self.watch_disk, "disk")
        if self.settings.backup_schedule:
            from apscheduler.triggers.cron import CronTrigger

            scheduler.add_job(
                _then_release_heap(self.backup),
                CronTrigger.from_crontab(self.settings.backup_schedule, timezone="UTC"),
                id="backup",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=3600,  # the agent was down at the hour: run once it is back
            )
        scheduler.start()
        self.teller.run(stop)
        CrashWatch(self.docker, self.instance, self.teller.event, is_live=self._is_live).run(stop)
        live = LiveServer(
            create_live_app(
                self.docker,
                self.db,
                self.instance,
                build_plan=self.build_plan,
                on_wake=self._wake.set,
                test_notification=self.teller.test_target,
                database_stats=self.databases.stats,
                draining=self.drainer.draining,
            ),
            self.settings.agent_socket,
            web_user=self.settings.web_account,
        )
        live.start()
        try:
            with ThreadPoolExecutor(
                max_workers=self.settings.agent_workers, thread_name_prefix="job"
            ) as pool:
                # a stop, a job queued (web's POST /wake) or a worker come free ends the wait
                threading.Thread(target=self._wake_on, args=(stop,), daemon=True, name="stop-watch").start()
                while not stop.is_set():
                    try:
                        self.tick(pool)
                    except Exception:  # noqa: BLE001  (keep serving; the next tick retries)
                        log.exception("agent tick failed")
                    self._wake.wait(self.settings.poll_seconds)
                    self._wake.clear()  # before the tick: a job committed after it is claimed by it
                log.info("agent stopping: waiting for %d running job(s)", len(self._running))
            # the stops under way, and drains nearly over; what is left the next start drains again
            self.drainer.close(timeout=min(self.settings.drain_seconds + self.settings.stop_timeout + 5, 40))
        finally:
            scheduler.shutdown(wait=False)
            live.stop()
        log.info("agent stopped")

    def _wake_on(self, stop: threading.Event) -> None:
        stop.wait()
        self._wake.set()

    def cleanup(self) -> None:
        """Scheduled: remove images beyond the last N successful releases of
        every app (their build layers go with them), release logs beyond
        PAAS_KEEP_RELEASE_LOGS, GitHub reports and notifications older than
        30 days, stale build directories, and BuildKit's cache beyond
        PAAS_BUILD_CACHE_MAX (least recently used first); skips an app
        while a job of it runs. Touches only what carries this installation's
        labels, but for dangling images (untagged: the layers a failed build
        left), which go after an hour, whoever's they were."""
        with session_scope(self.db) as session:
            busy = set(session.exec(select(Job.app_id).where(col(Job.state) == JobState.running)).all())
            apps = []
            for a in session.exec(select(App).where(App.state == "active")).all():
                current = live_release(session, a)
                if current is not None:
                    session.expunge(current)
                apps.append((a.id, a.name, current))
        for app_id, name, current in apps:
            if app_id in busy:
                continue
            live = current.version if current else None
            try:
                check_app_name(name)  # it becomes a path
                self._drain(name, self._leftovers(name, current))  # what the drainer gave up on
                self.pipeline.prune_images(name)
                prune_release_logs(
                    self.settings.logs_dir, name, keep=self.settings.keep_release_logs, live=live
                )
            except Exception:  # noqa: BLE001  (one app's trouble must not stop the others)
                log.exception("clean-up of %s failed", name)
        try:
            self.teller.prune()
        except Exception:  # noqa: BLE001
            log.exception("could not forget old notices")
        try:
            count, reclaimed = self.docker.prune_dangling_images(older_than="1h")
            if count:
                log.info("removed %d dangling image(s) (%d MiB)", count, reclaimed // 2**20)
        except EngineError as exc:
            log.error("could not remove dangling images: %s", exc)
        try:
            reclaimed = self.docker.prune_build_cache(keep=memory_bytes(self.settings.build_cache_max))
            if reclaimed:
                log.info(
                    "trimmed BuildKit's cache to PAAS_BUILD_CACHE_MAX (%d MiB freed)", reclaimed // 2**20
                )
        except EngineError as exc:
            log.error("could not trim BuildKit's cache: %s", exc)
        builds = self.settings.builds_dir
        if builds.is_dir():
            with self._lock:
                running = bool(self._running)
            if not running:
                for leftover in builds.iterdir():
                    if leftover.name != ID_KEY_FILE:  # not a build's: what build secrets' ids are keyed with
                        shutil.rmtree(leftover, ignore_errors=True)
        log.info("clean-up done for %d app(s)", len(apps))

    def watch_nginx(self) -> None:
        """Scheduled: nginx stopped answering (killed, crashed, stopped by
        hand): start it again, then make every paas site match the database."""
        if self.nginx.answers():
            return
        port = self.settings.http_port
        log.error("nginx does not answer on port %s: every app is down; starting it", port)
        try:
            self.nginx.start()
        except NginxError as exc:
            log.error("could not start nginx: %s", exc)
            return
        log.warning("nginx started again")
        self.reconcile()

    def backup(self) -> None:
        """Scheduled (PAAS_BACKUP_SCHEDULE): agent/backup.py's scheduled_backup."""
        from agent.backup import backup_failed_notice, scheduled_backup

        try:
            scheduled_backup(self.settings, self.docker)
        except Exception as exc:  # noqa: BLE001  (the next run tries again; the log says why)
            log.exception("scheduled backup failed")
            title, body = backup_failed_notice(self.settings, exc, scheduled=True)
            self.teller.event("backup.failed", title=title, body=body, kind="failure")

    def watch_disk(self) -> None:
        """Scheduled: say once when free disk falls under `paas doctor`'s warning
        line (15% or 3 GiB), and again only after it has recovered; while no
        target listens, it is said at the next check that one does."""
        from agent.doctor import OK, disk_checks

        low = [c for c in disk_checks(self.settings, self.docker) if c.status != OK]
        if not low:
            self._disk_low = False
        elif not self._disk_low:  # said once to whoever listens; with no target yet, at the next check
            self._disk_low = (
                self.teller.event(
                    "disk.low",
                    title=f"paas on {self.settings.control_host}: disk space is low",
                    body="\n".join(f"{c.name}: {c.detail}" for c in low) + f"\n{low[0].fix}",
                    kind="warning",
                )
                > 0
            )

    def _needed(self, app_name: str, name: str) -> bool:
        """Whether container ``name`` of the app runs its live release or is one
        a running job made: the drainer's last look before it stops one."""
        info = self.docker.container(name)
        if info is None:
            return False
        made = info.labels.get("paas.deployment", "")
        if self._is_live(app_name, name, made):
            return True
        with session_scope(self.db) as session:
            app = session.exec(select(App).where(App.name == app_name)).first()
            job_id = queue.running_job(session, app.id) if app is not None else None
            job = session.get(Job, job_id) if job_id is not None else None
            return job is not None and job.deployment_id is not None and made == str(job.deployment_id)

    def _is_live(self, app_name: str, name: str, deployment: str) -> bool:
        """Whether container ``name`` (its label ``paas.deployment=deployment``) is of the live release."""
        with session_scope(self.db) as session:
            app = session.exec(select(App).where(App.name == app_name)).first()
            current = live_release(session, app) if app is not None else None
            if current is None:
                return False
            return in_release(name, {"paas.deployment": deployment}, current.id, current.containers)

    def tick(self, pool: ThreadPoolExecutor) -> None:
        now = time.monotonic()
        if now - self._last_recover >= self.settings.job_lease_seconds / 3:
            self._last_recover = now
            self.recover()
        try:
            self.teller.scan()  # queued jobs reported to GitHub before they are claimed
        except Exception:  # noqa: BLE001  (telling people must never stop the queue)
            log.exception("could not record queued jobs for GitHub")
        with self._lock:
            for job_id in [j for j, f in self._running.items() if f.done()]:
                del self._running[job_id]
            free = self.settings.agent_workers - len(self._running)
        for _ in range(free):
            with session_scope(self.db) as session:
                job = queue.claim(session, owner=self.owner, lease_seconds=self.settings.job_lease_seconds)
                if job is not None:
                    session.expunge(job)
            if job is None:
                return
            assert job.id is not None
            log.info("claimed job %s (%s %s)", job.id, job.kind, job.app_name)
            future = pool.submit(self.execute, job)
            future.add_done_callback(lambda _: self._wake.set())  # a worker is free, the app too
            with self._lock:
                self._running[job.id] = future

    def _heartbeat_loop(self, stop: threading.Event) -> None:
        interval = self.settings.job_lease_seconds / 3
        while not stop.wait(interval):
            with self._lock:
                ids = list(self._running)
            try:
                with session_scope(self.db) as session:
                    queue.heartbeat(
                        session, owner=self.owner, job_ids=ids, lease_seconds=self.settings.job_lease_seconds
                    )
            except Exception:  # noqa: BLE001
                log.exception("heartbeat failed")

    # one job ----------------------------------------------------------------------

    def execute(self, job: Job) -> None:
        assert job.id is not None
        state, error, dep_id, note = JobState.failed, "", None, ""
        try:
            if job.kind in queue.CANCELLABLE:
                result = self.pipeline.run(job)
                dep_id = result.deployment_id
                if result.ok:
                    state, error, note = JobState.done, result.note, result.note
                else:
                    state = JobState.cancelled if result.cancelled else JobState.failed
                    error = result.error
            elif job.kind == queue.DELETE:
                self.delete_app(job)
                state = JobState.done
            elif job.kind == queue.DATABASE:
                try:
                    note = self.databases.run(job)
                    state, error = JobState.done, note
                except PaasError as exc:  # said for the user: no traceback, no type name
                    log.warning("job %s (database %s): %s", job.id, job.app_name, exc)
                    error = str(exc)
            else:
                error = f"unknown job kind {job.kind!r}"
        except Exception as exc:  # noqa: BLE001  (the job must end, whatever happened)
            log.exception("job %s failed", job.id)
            error = f"{type(exc).__name__}: {exc}"
        with session_scope(self.db) as session:
            if not queue.finish(
                session, job_id=job.id, owner=self.owner, state=state, error=error, deployment_id=dep_id
            ):
                log.warning("job %s: lease was lost before it finished", job.id)
        log.info("job %s %s %s", job.id, state, error)
        if job.kind in queue.CANCELLABLE:
            self._tell_finished(job, dep_id, Ended(state, error, note))
        release_free_heap()

    def _tell_finished(self, job: Job, dep_id: int | None, ended: Ended) -> None:
        try:
            self.teller.finished(job, dep_id, ended)
        except Exception:  # noqa: BLE001  (telling people must never fail a job)
            log.exception("could not record how job %s ended", job.id)

    def delete_app(self, job: Job) -> None:
        name = check_job(job).app_name  # it becomes paths and label filters
        self.drainer.forget(name)
        for c in self.docker.containers(owned(self.instance, name)):
            self.docker.stop_and_remove(c.name, timeout=self.settings.stop_timeout)
        self.nginx.apply(name, None)
        for image_id, tags, _labels in self.docker.images(owned(self.instance, name)):
            for ref in tags or [image_id]:
                self.docker.remove_image(ref)
        self.docker.remove_volumes(owned(self.instance, name))
        self.pipeline.source.forget(name)
        shutil.rmtree(self.settings.logs_dir / name, ignore_errors=True)
        with session_scope(self.db) as session:
            app = session.get(App, job.app_id) if job.app_id else None
            if app is not None:
                session.delete(app)
        log.info("deleted app %s", name)

    # recovery and reconcile -----------------------------------------------------------

    def recover(self) -> None:
        """Fail jobs whose agent died, and their half-made deployments."""
        with session_scope(self.db) as session:
            expired = queue.recover_expired(session)
            for job in expired:
                dep = session.get(Deployment, job.deployment_id) if job.deployment_id else None
                if dep is not None and dep.status == DeploymentStatus.running:
                    dep.status = DeploymentStatus.failed
                    dep.error = f"{dep.step or 'deploy'}: {job.error}"
                    dep.finished_at = utcnow()
                    session.add(dep)
                elif dep is not None and dep.status == DeploymentStatus.succeeded:
                    # it went live (the switch) before its agent died: reconcile ends the retire
                    job.state = JobState.done
                    job.error = (
                        f"v{dep.version} is live; its agent stopped while retiring the previous release "
                        "(recovery removes what is left of it)"
                    )
                    dep.finished_at = dep.finished_at or utcnow()
                    session.add_all([job, dep])
                log.warning("job %s (%s %s): lease expired; %s", job.id, job.kind, job.app_name, job.state)
            names = sorted({j.app_name for j in expired})
            ended = [(job, job.deployment_id, Ended(job.state, job.error)) for job in expired]
        for job, dep_id, how in ended:
            if job.kind in queue.CANCELLABLE:
                self._tell_finished(job, dep_id, how)
        for name in names:
            self.reconcile_app(name)

    def reconcile(self) -> None:
        """Make Docker and nginx match the database (run at start)."""
        self.nginx.ensure_common()
        try:
            self.nginx.ensure_default()
        except NginxError as exc:
            log.error("unknown hostnames may reach a paas site: %s", exc)
        self.sites.refresh_control()
        with session_scope(self.db) as session:
            apps = {a.name for a in session.exec(select(App)).all()}
        for c in self.docker.containers(owned(self.instance)):
            if "paas.database" in c.labels:
                continue  # a database's: its own reconcile below
            if c.labels.get("paas.app") not in apps:
                log.info("removing %s: its app no longer exists", c.name)
                self.docker.stop_and_remove(c.name, timeout=self.settings.stop_timeout)
        self.databases.reconcile()  # before the apps, which may bind them
        for name in sorted(apps):
            self.reconcile_app(name)

    def reconcile_app(self, name: str) -> None:
        with session_scope(self.db) as session:
            app = session.exec(select(App).where(App.name == name)).first()
            if app is None or app.state != "active":
                return
            busy = queue.running_job(session, app.id)
            current = live_release(session, app)
            try:
                check_app(app)
                if current is not None:
                    check_release(current, app=name)
            except UntrustedRow as exc:
                log.error("not reconciling %r: %s", name, exc)
                return
        if busy is not None:
            return  # a live job owns this app's containers right now
        leftovers = self._leftovers(name, current)
        if current is not None and (current.upstreams or current.host_port):  # web containers live
            for cname in current.containers:
                info = self.docker.container(cname)
                if info is None:
                    log.error(
                        "app %s: container %s of the live release v%s is missing",
                        name,
                        cname,
                        current.version,
                    )
                elif info.status != "running":
                    try:
                        self.docker.start_existing(cname)
                        log.info("restarted %s", cname)
                    except EngineError as exc:
                        log.error("app %s: cannot restart %s: %s", name, cname, exc)
            # nginx back on the live release before anything else goes: an agent that died
            # mid-switch may have left it routing to a dead attempt's containers
            self.sites.refresh_app(name)
        # drained first: they may be the release before the live one, still finishing requests
        self._drain(name, leftovers)

    def _leftovers(self, name: str, current: Deployment | None) -> list[ContainerInfo]:
        """The app's containers outside its live release."""
        return [
            c
            for c in self.docker.containers(owned(self.instance, name))
            if current is None or not in_release(c.name, c.labels, current.id, current.containers)
        ]

    def _drain(self, name: str, leftovers: list[ContainerInfo]) -> None:
        """Hand ``leftovers`` of the app to the drainer."""
        taken = self.drainer.retire(name, [c.name for c in leftovers])
        if taken:
            log.info("app %s: draining, then removing %s", name, ", ".join(taken))


def release_free_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's malloc_trim):
    a job's build output, logs and engine answers leave megabytes freed but
    held (about 2 MiB measured after a deploy)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL(None).malloc_trim(0)


def _then_release_heap(task: Callable[[], None]) -> Callable[[], None]:
    """``task``, then the C heap's free pages back to the system (a clean-up
    or a backup frees megabytes glibc would otherwise keep)."""

    def run() -> None:
        try:
            task()
        finally:
            release_free_heap()

    return run
