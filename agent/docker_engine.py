"""The one door to the Docker engine. Nothing else in paas imports ``docker``.

Every method maps one intent (build this, run that once, start this container)
onto the Docker SDK and turns its exceptions into :class:`EngineError`, whose
message is fit for a deployment log and whose ``kind`` says what happened
(read here, once, from the SDK's exception, the API's status or the
engine's own words: nobody else reads the message).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.utils import kwargs_from_env, parse_repository_tag

from paas.errors import ErrorKind, PaasError, says_disk_full

__all__ = [
    "ContainerInfo",
    "DockerEngine",
    "EngineError",
    "Limits",
    "OneOffResult",
    "ServiceSpec",
    "container_kwargs",
    "serving_kwargs",
]

LineSink = Callable[[str], None]


class EngineError(PaasError):
    """The engine refused or failed an operation; ``kind`` says how."""

    status_code = 503


# how the engine says a host port is taken (docker-proxy's words, or the bind's errno)
_PORT_TAKEN_WORDS = ("port is already allocated", os.strerror(errno.EADDRINUSE).lower())


@dataclass(frozen=True)
class BuildKitOptions:
    """How a build goes through BuildKit (agent/buildkit.py): the CLI, the
    checked Dockerfile's text, the cap on processes of its steps."""

    cli: str
    dockerfile_text: str
    pids: int
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)  # the app's, by their ids
    scratch: Path | None = None  # where the CLI's files go (the image id, the secrets); None: /tmp


@dataclass(frozen=True)
class ContainerInfo:
    name: str
    status: str  # created | running | exited | ...
    labels: dict[str, str]
    exit_code: int | None = None
    started_at: str = ""  # RFC 3339, from the engine
    restarts: int = 0
    health: str = ""  # the image's HEALTHCHECK status, if it has one
    oom_killed: bool = False  # the kernel killed it at its memory limit
    published: tuple[str, ...] = ()  # host_ip:host_port of each published port


# Docker's default capabilities that a web app or worker has no use for
# (raw sockets, device nodes, file capabilities, chroot, audit, capability changes)
DROPPED_CAPABILITIES = ("NET_RAW", "MKNOD", "SETFCAP", "SYS_CHROOT", "AUDIT_WRITE", "SETPCAP")


@dataclass(frozen=True)
class Limits:
    """What one app container may take of the host."""

    memory: int  # bytes; swap is not allowed beyond it
    nano_cpus: int
    pids: int

    def create_kwargs(self) -> dict[str, Any]:
        return {
            "mem_limit": self.memory,
            "memswap_limit": self.memory,
            "nano_cpus": self.nano_cpus,
            "pids_limit": self.pids,
            "security_opt": ["no-new-privileges:true"],
            "cap_drop": list(DROPPED_CAPABILITIES),
        }


@dataclass(frozen=True)
class ServiceSpec:
    """A database's container, all the engine needs to run it (agent/databases.py makes it)."""

    name: str
    image: str
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = field(repr=False)  # holds the password
    labels: tuple[tuple[str, str], ...]
    user: str
    volume: str
    data_path: str
    network: str
    port: int
    exposed_port: int | None
    health: tuple[str, ...]
    start_seconds: int
    stop_signal: str
    stop_timeout: int
    memory: int
    nano_cpus: int
    pids: int
    publish_network: str = ""  # joined first, only when exposed_port


@dataclass(frozen=True)
class OneOffResult:
    exit_code: int | None  # None: killed on timeout or cancel
    timed_out: bool
    cancelled: bool = False
    oom_killed: bool = False


class DockerEngine:
    def __init__(self, client: Any | None = None, *, timeout: int = 120) -> None:
        try:
            self._client = client or docker.from_env(timeout=timeout)
        except DockerException as exc:
            raise EngineError(f"cannot reach the Docker engine: {exc}", kind=ErrorKind.refused) from exc

    def ping(self) -> None:
        try:
            self._client.ping()
        except DockerException as exc:
            raise EngineError(f"the Docker engine does not answer: {exc}", kind=ErrorKind.refused) from exc

    def describe(self) -> tuple[str, str]:
        """The engine's version and where it keeps its data (DockerRootDir)."""
        try:
            info = self._client.info()
        except DockerException as exc:
            raise EngineError(f"the Docker engine does not answer: {exc}", kind=ErrorKind.refused) from exc
        return str(info.get("ServerVersion", "?")), str(info.get("DockerRootDir", ""))

    # images -----------------------------------------------------------------

    def build(
        self,
        *,
        context: Path,
        dockerfile: str,
        tag: str,
        labels: dict[str, str],
        on_line: LineSink,
        timeout: int,
        network: str = "",
        buildargs: dict[str, str] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        memory: int | None = None,
        buildkit: BuildKitOptions | None = None,
        target: str = "",
    ) -> str:
        """Build ``context`` (honouring its .dockerignore); returns the image id.
        ``memory`` caps each step's container (bytes, no swap beyond it);
        ``target``: the Dockerfile stage to build (empty: the last).
        With ``buildkit``, BuildKit builds ``buildkit.dockerfile_text``
        instead of the classic builder building ``dockerfile`` (agent/buildkit.py).

        A watcher thread drops the build's connection when ``should_stop``
        says so or the timeout passes, even while a step prints nothing: the
        engine cancels a build whose client went away.
        """
        if buildkit is not None:
            return self._buildkit(
                context,
                tag,
                labels,
                on_line,
                timeout,
                network,
                buildargs,
                should_stop,
                memory,
                buildkit,
                target,
            )
        api = docker.APIClient(version=self._client.api.api_version, timeout=timeout, **kwargs_from_env())
        responses: list[Any] = []
        api.hooks["response"].append(lambda response, *_a, **_k: responses.append(response))
        stopped: list[EngineError] = []
        finished = threading.Event()
        started = time.monotonic()

        def watch() -> None:
            while not finished.wait(0.5):
                if should_stop():
                    stopped.append(EngineError("build cancelled", kind=ErrorKind.cancelled))
                elif time.monotonic() - started > timeout:
                    stopped.append(EngineError(f"build took longer than {timeout}s", kind=ErrorKind.timeout))
                else:
                    continue
                for response in responses:
                    _drop_connection(response)
                return

        watcher = threading.Thread(target=watch, daemon=True, name=f"build-watch-{tag}")
        watcher.start()
        image_id = ""
        try:
            stream = api.build(
                path=str(context),
                dockerfile=dockerfile,
                tag=tag,
                labels=labels,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
                timeout=timeout,
                network_mode=network or None,
                buildargs=buildargs or None,
                target=target or None,
                container_limits={"memory": memory, "memswap": memory} if memory else None,
            )
            for chunk in stream:
                if "error" in chunk:
                    detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                    raise _said(str(detail).strip())
                text = chunk.get("stream") or chunk.get("status") or ""
                for line in str(text).splitlines():
                    if line.strip():
                        on_line(line.rstrip())
                aux = chunk.get("aux")
                if isinstance(aux, dict) and aux.get("ID"):
                    image_id = str(aux["ID"])
        except Exception as exc:
            if stopped:
                raise stopped[0] from None
            if isinstance(exc, EngineError):
                raise
            if isinstance(exc, (APIError, DockerException)):
                raise _failed(exc) from exc
            raise _failed(exc, f"the build stream broke: {type(exc).__name__}: {exc}") from exc
        finally:
            finished.set()
            api.close()
        if stopped:
            raise stopped[0]
        if not image_id:
            image_id = self.image_id(tag) or ""
        if not image_id:
            raise EngineError("the engine reported no image for the build")
        return image_id

    def _buildkit(
        self,
        context: Path,
        tag: str,
        labels: dict[str, str],
        on_line: LineSink,
        timeout: int,
        network: str,
        buildargs: dict[str, str] | None,
        should_stop: Callable[[], bool],
        memory: int | None,
        options: BuildKitOptions,
        target: str,
    ) -> str:
        from agent import buildkit

        buildkit.check_engine(self.cgroup_driver())
        buildkit.cap_build_steps(memory or buildkit.unlimited_memory(), options.pids)
        iidfile = buildkit.scratch_iidfile(options.scratch)
        try:
            return buildkit.build(
                buildkit.BuildKitBuild(
                    cli=options.cli,
                    context=context,
                    dockerfile_text=options.dockerfile_text,
                    tag=tag,
                    iidfile=iidfile,
                    labels=labels,
                    buildargs=buildargs or {},
                    network=network,
                    target=target,
                    secrets=options.secrets,
                ),
                on_line=on_line,
                should_stop=should_stop,
                timeout=timeout,
            )
        finally:
            shutil.rmtree(iidfile.parent, ignore_errors=True)

    def image_id(self, ref: str) -> str | None:
        try:
            return str(self._client.images.get(ref).id)
        except ImageNotFound:
            return None
        except DockerException as exc:
            raise _failed(exc) from exc

    def image_names_and_labels(self, ref: str) -> tuple[list[str], dict[str, str]] | None:
        """The tags and digests by which ``ref`` (a name, tag, digest or any
        id prefix the engine resolves) is known, and its labels; None when
        the engine has no such image."""
        try:
            image = self._client.images.get(ref)
        except (ImageNotFound, NotFound):
            return None
        except APIError as exc:
            if exc.status_code in (400, 404):  # not a reference the engine can read
                return None
            raise _failed(exc) from exc
        except DockerException as exc:
            raise _failed(exc) from exc
        names = [*(image.tags or []), *(image.attrs.get("RepoDigests") or [])]
        return names, dict(image.labels or {})

    def pull(self, ref: str, *, timeout: float) -> str | None:
        """Pull ``ref`` (a name with a tag or digest; ``latest`` without)
        from its registry. None when done; else why not, in the registry's
        or engine's words (no such image, no registry, refused), or that it
        took longer than ``timeout`` seconds: the pull is then abandoned
        and its connection dropped (the engine stops a pull whose client
        went away), even while the engine has not answered yet. A full disk
        says nothing of the image: it raises EngineError (``disk_full``)."""
        repository, tag = parse_repository_tag(ref)
        api = docker.APIClient(version=self._client.api.api_version, timeout=timeout, **kwargs_from_env())
        late = threading.Event()
        responses: list[Any] = []

        def on_response(response: Any, *_a: Any, **_k: Any) -> None:
            responses.append(response)
            if late.is_set():
                _drop_connection(response)

        api.hooks["response"].append(on_response)
        outcome: list[str | None] = []

        def run() -> None:
            try:
                for chunk in api.pull(repository, tag=tag or "latest", stream=True, decode=True):
                    if isinstance(chunk, dict) and chunk.get("error"):
                        detail = (chunk.get("errorDetail") or {}).get("message") or chunk["error"]
                        outcome.append(str(detail).strip())
                        return
                outcome.append(None)
            except (APIError, DockerException) as exc:
                outcome.append(_explain(exc))
            except Exception as exc:  # noqa: BLE001  (a dropped connection surfaces as requests' or urllib3's error)
                outcome.append(f"the pull stream broke: {type(exc).__name__}: {exc}")
            finally:
                api.close()

        worker = threading.Thread(target=run, daemon=True, name=f"pull-{ref}")
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            late.set()
            for response in list(responses):
                _drop_connection(response)
            return f"the pull took longer than {timeout:g}s"
        said = outcome[0] if outcome else "the pull ended without a word from the engine"
        if said is not None and _kind_said(said) is ErrorKind.disk_full:
            raise EngineError(f"cannot pull {ref}: {said}", kind=ErrorKind.disk_full)
        return said

    def image_config(self, ref: str) -> dict[str, Any]:
        try:
            return dict(self._client.images.get(ref).attrs.get("Config") or {})
        except DockerException as exc:
            raise _failed(exc) from exc

    def image_has_file(self, ref: str, path: str) -> bool:
        """Whether the image holds a regular file at ``path`` (nothing is run)."""
        container = None
        try:
            container = self._client.containers.create(ref, command=["true"], entrypoint=[])
            stream, stat = container.get_archive(path)
            for _ in stream:  # drain the archive so the connection is released
                pass
            go_mode_dir = 1 << 31  # the engine reports Go FileMode bits
            return not stat.get("linkTarget") and not int(stat.get("mode", 0)) & go_mode_dir
        except NotFound:
            return False
        except DockerException as exc:
            raise _failed(exc) from exc
        finally:
            if container is not None:
                _quietly(lambda: container.remove(force=True))

    def images(self, labels: dict[str, str]) -> list[tuple[str, list[str], dict[str, str]]]:
        """(id, tags, labels) of every image carrying all ``labels``."""
        try:
            found = self._client.images.list(filters={"label": _label_filter(labels)})
        except DockerException as exc:
            raise _failed(exc) from exc
        return [(str(i.id), list(i.tags), dict(i.labels or {})) for i in found]

    def remove_image(self, ref: str) -> bool:
        """Remove an image; False if it is gone already or still in use."""
        try:
            self._client.images.remove(ref, noprune=False)
            return True
        except ImageNotFound:
            return False
        except APIError as exc:
            if exc.status_code == 409:  # in use by a container
                return False
            raise _failed(exc) from exc

    def prune_dangling_images(self, *, older_than: str) -> tuple[int, int]:
        """``docker image prune`` of untagged images made longer than
        ``older_than`` ago (a build running now keeps its layers); returns how
        many went and the bytes freed."""
        try:
            done = self._client.images.prune(filters={"dangling": True, "until": older_than})
        except DockerException as exc:
            raise _failed(exc) from exc
        return len(done.get("ImagesDeleted") or []), int(done.get("SpaceReclaimed") or 0)

    def build_cache_bytes(self) -> int:
        """The disk BuildKit's cache takes (``docker system df``), shared or not."""
        try:
            usage = self._client.df()
        except DockerException as exc:
            raise _failed(exc) from exc
        return sum(int(entry.get("Size") or 0) for entry in usage.get("BuildCache") or [])

    def prune_build_cache(self, *, keep: int) -> int:
        """``docker builder prune --all --keep-storage``: BuildKit's cache
        down to ``keep`` bytes, least recently used first, whatever no build
        is using (without --all, only what no image refers to); returns the
        bytes freed."""
        try:
            done = self._client.api.prune_builds(keep_storage=keep, all=True)
        except DockerException as exc:
            raise _failed(exc) from exc
        return int(done.get("SpaceReclaimed") or 0)

    def buildkit_problem(self) -> str | None:
        """Why BuildKit's build steps could not be capped on this engine
        (agent/buildkit.check_engine), or None when they can."""
        from agent import buildkit

        try:
            buildkit.check_engine(self.cgroup_driver())
        except buildkit.BuildKitError as exc:
            return str(exc)
        return None

    def cgroup_driver(self) -> str:
        """How the engine makes its containers' cgroups: cgroupfs or systemd."""
        try:
            return str(self._client.info().get("CgroupDriver", ""))
        except DockerException as exc:
            raise _failed(exc) from exc

    def save_image(self, ref: str, into: BinaryIO) -> None:
        """Write ``ref`` as ``docker save`` does (tagged), streamed into ``into``."""
        try:
            for chunk in self._client.images.get(ref).save(chunk_size=1024 * 1024, named=True):
                into.write(chunk)
        except DockerException as exc:
            raise _failed(exc, f"cannot save image {ref}: {_explain(exc)}") from exc

    def load_image(self, source: BinaryIO) -> None:
        """``docker load`` from a file (streamed, never read whole into memory)."""
        try:
            for message in self._client.api.load_image(source):
                if isinstance(message, dict) and message.get("error"):
                    raise _said(f"cannot load an image: {message['error']}")
        except DockerException as exc:
            raise _failed(exc, f"cannot load an image: {_explain(exc)}") from exc

    # volumes ------------------------------------------------------------------

    def volume_path(self, name: str, labels: dict[str, str] | None = None) -> Path | None:
        """Where the local volume ``name`` keeps its files on this host; None if
        there is no such volume. With ``labels`` it is created when missing."""
        try:
            try:
                volume = self._client.volumes.get(name)
            except NotFound:
                if labels is None:
                    return None
                volume = self._client.volumes.create(name=name, labels=labels)
        except DockerException as exc:
            raise _failed(exc) from exc
        driver, mountpoint = volume.attrs.get("Driver"), volume.attrs.get("Mountpoint") or ""
        if driver != "local" or not Path(mountpoint).is_dir():
            raise EngineError(
                f"volume {name} is not a local directory on this host (driver {driver}, {mountpoint!r}): "
                "only the engine on this machine with local volumes is supported"
            )
        return Path(mountpoint)

    # containers ---------------------------------------------------------------

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
        volumes: dict[str, dict[str, str]] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        limits: Limits | None = None,
        networks: Sequence[str] = (),
    ) -> OneOffResult:
        """Run ``command`` in a fresh container, stream its output, remove it.
        It is killed when ``timeout`` passes or ``should_stop`` says so.
        It joins ``networks`` (its databases') before it starts."""
        try:
            self._ensure_volumes(volumes, labels)
            container = self._client.containers.create(
                image,
                **container_kwargs(
                    command=command, name=name, env=env, labels=labels, volumes=volumes, limits=limits
                ),
            )
        except DockerException as exc:
            raise _failed(exc) from exc
        try:
            self._join(container, networks)
            container.start()
            reader = threading.Thread(
                target=_pump_logs, args=(container, on_line), daemon=True, name=f"logs-{name}"
            )
            reader.start()
            deadline = time.monotonic() + timeout
            while True:
                try:
                    result = container.wait(timeout=1)
                    break
                except DockerException:
                    raise  # the engine answered: not a timeout
                except Exception:  # noqa: BLE001  (requests' timeout types vary by version)
                    cancelled = should_stop()
                    if cancelled or time.monotonic() > deadline:
                        _quietly(lambda: container.kill())
                        reader.join(timeout=5)
                        return OneOffResult(exit_code=None, timed_out=not cancelled, cancelled=cancelled)
            reader.join(timeout=10)
            container.reload()
            oom = bool((container.attrs.get("State") or {}).get("OOMKilled"))
            return OneOffResult(exit_code=int(result.get("StatusCode", -1)), timed_out=False, oom_killed=oom)
        except DockerException as exc:
            raise _failed(exc) from exc
        finally:
            _quietly(lambda: container.remove(force=True))

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
        volumes: dict[str, dict[str, str]] | None = None,
        limits: Limits | None = None,
        networks: Sequence[str] = (),
    ) -> str:
        """Start a long-running container, published on host_ip:host_port only
        (no port published when host_port is None: a worker), on the default
        bridge and on ``networks`` (its databases'), joined before it starts."""
        try:
            self._ensure_volumes(volumes, labels)
            container = self._client.containers.create(
                image,
                **container_kwargs(
                    command=command, name=name, env=env, labels=labels, volumes=volumes, limits=limits
                ),
                **serving_kwargs(container_port=container_port, host_ip=host_ip, host_port=host_port),
            )
            self._join(container, networks)
            container.start()
        except DockerException as exc:
            _quietly(lambda: self._client.containers.get(name).remove(force=True))
            raise _failed(exc) from exc
        return str(container.id)

    def _join(self, container: Any, networks: Sequence[str]) -> None:
        for network in networks:
            self._client.networks.get(network).connect(container)

    # databases ----------------------------------------------------------------

    def ensure_network(self, name: str, labels: dict[str, str], *, internal: bool = True) -> None:
        """A bridge network of its own, internal (no route out of the host:
        nor can a port be published from it) unless told, made unless it
        exists with ``labels``; one of that name without them is not ours,
        and refused."""
        try:
            try:
                network = self._client.networks.get(name)
            except NotFound:
                self._client.networks.create(name, driver="bridge", internal=internal, labels=labels)
                return
            theirs = network.attrs.get("Labels") or {}
            if any(theirs.get(k) != v for k, v in labels.items()):
                raise EngineError(
                    f"a network named {name} exists and was not made by paas", kind=ErrorKind.conflict
                )
        except DockerException as exc:
            raise _failed(exc) from exc

    def remove_network(self, name: str) -> None:
        try:
            self._client.networks.get(name).remove()
        except NotFound:
            return
        except DockerException as exc:
            raise _failed(exc) from exc

    def network_members(self, name: str) -> list[str]:
        """The names of the containers on network ``name`` ([] when it is gone)."""
        try:
            network = self._client.networks.get(name)
        except NotFound:
            return []
        except DockerException as exc:
            raise _failed(exc) from exc
        return sorted(str(c.get("Name", "")) for c in (network.attrs.get("Containers") or {}).values())

    def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        """Volume ``name``, made unless it exists with ``labels`` (kept from
        before); one without them is another's, and refused."""
        try:
            try:
                volume = self._client.volumes.get(name)
            except NotFound:
                self._client.volumes.create(name=name, labels=labels)
                return
        except DockerException as exc:
            raise _failed(exc) from exc
        theirs = volume.attrs.get("Labels") or {}
        if any(theirs.get(k) != v for k, v in labels.items()):
            raise EngineError(
                f"a volume named {name} exists and is not this installation's: remove or rename it",
                kind=ErrorKind.conflict,
            )

    def remove_volume(self, name: str) -> bool:
        try:
            self._client.volumes.get(name).remove(force=True)
        except NotFound:
            return False
        except DockerException as exc:
            raise _failed(exc) from exc
        return True

    def run_service(self, spec: ServiceSpec) -> None:
        """Create and start a database's container from ``spec``: on its own
        network only, restarted unless stopped, stopped with its own signal
        and grace. Published on 127.0.0.1 only when ``spec`` says so, through
        a network of its own that can publish (``spec.publish_network``: an
        internal network cannot), which nothing else joins."""
        api = self._client.api
        first = spec.publish_network if spec.exposed_port else spec.network
        try:
            host_config = api.create_host_config(
                binds={spec.volume: {"bind": spec.data_path, "mode": "rw"}},
                port_bindings={spec.port: ("127.0.0.1", spec.exposed_port)} if spec.exposed_port else None,
                restart_policy={"Name": "unless-stopped"},
                init=True,
                log_config={"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
                mem_limit=spec.memory,
                memswap_limit=spec.memory,
                nano_cpus=spec.nano_cpus,
                pids_limit=spec.pids,
                security_opt=["no-new-privileges:true"],
                cap_drop=list(DROPPED_CAPABILITIES),
                network_mode=first,
            )
            created = api.create_container(
                spec.image,
                name=spec.name,
                command=list(spec.command) or None,
                environment=dict(spec.env),
                labels=dict(spec.labels),
                user=spec.user or None,
                ports=[spec.port] if spec.exposed_port else None,
                host_config=host_config,
                healthcheck={
                    "test": list(spec.health),
                    "interval": 2_000_000_000,
                    "timeout": 5_000_000_000,
                    "retries": 5,
                    "start_period": spec.start_seconds * 1_000_000_000,
                },
                stop_signal=spec.stop_signal,
                stop_timeout=spec.stop_timeout,
                networking_config=api.create_networking_config({first: api.create_endpoint_config()}),
            )
            if first != spec.network:
                api.connect_container_to_network(created["Id"], spec.network)
            api.start(created["Id"])
        except DockerException as exc:
            _quietly(lambda: api.remove_container(spec.name, force=True))
            raise _failed(exc) from exc

    def exec_to(
        self,
        name: str,
        command: list[str],
        *,
        into: BinaryIO | None = None,
        user: str = "",
        env: dict[str, str] | None = None,
    ) -> tuple[int, bytes, bytes]:
        """Run ``command`` in running container ``name``: (exit code, stdout,
        the last 64 KiB of stderr). With ``into``, stdout is streamed there
        as it comes (a dump of any size) and the returned stdout is empty."""
        api = self._client.api
        out, err = bytearray(), bytearray()
        try:
            exec_id = api.exec_create(name, command, stdout=True, stderr=True, user=user, environment=env)[
                "Id"
            ]
            for chunk_out, chunk_err in api.exec_start(exec_id, stream=True, demux=True):
                if chunk_out:
                    if into is not None:
                        into.write(chunk_out)
                    else:
                        out += chunk_out
                if chunk_err:
                    err += chunk_err
                    del err[: max(0, len(err) - 65536)]
            code = api.exec_inspect(exec_id).get("ExitCode")
        except DockerException as exc:
            raise _failed(exc) from exc
        return (-1 if code is None else int(code)), bytes(out), bytes(err)

    def run_tool(
        self,
        image: str,
        command: list[str],
        *,
        reads: dict[str, str],
        timeout: float,
        user: str = "",
        network: str = "",
        env: dict[str, str] | None = None,
    ) -> tuple[int | None, str]:
        """Run ``command`` in a throwaway container of ``image``, without a
        network (or on ``network``), with each host file of ``reads`` bound
        read-only where it says: (exit code, None on timeout; the last 4 KiB
        of its output)."""
        try:
            container = self._client.containers.run(
                image,
                command,
                detach=True,
                network_disabled=not network,
                network=network or None,
                environment=env or None,
                entrypoint=[],
                volumes={host: {"bind": inside, "mode": "ro"} for host, inside in reads.items()},
                labels={"paas.tool": "1"},
                user=user or None,
                security_opt=["no-new-privileges:true"],
                cap_drop=["ALL"],
                mem_limit="512m",
                pids_limit=256,
            )
        except DockerException as exc:
            raise _failed(exc) from exc
        try:
            try:
                result = container.wait(timeout=timeout)
            except DockerException:
                raise
            except Exception:  # noqa: BLE001  (requests' timeout types vary by version)
                _quietly(lambda: container.kill())
                return None, ""
            output = container.logs(stdout=True, stderr=True)[-4096:].decode("utf-8", errors="replace")
            return int(result.get("StatusCode", -1)), output
        except DockerException as exc:
            raise _failed(exc) from exc
        finally:
            _quietly(lambda: container.remove(force=True))

    def _ensure_volumes(self, volumes: dict[str, dict[str, str]] | None, labels: dict[str, str]) -> None:
        keep = {k: v for k, v in labels.items() if k in ("paas.instance", "paas.app")}
        for name in volumes or {}:
            try:
                self._client.volumes.get(name)
            except NotFound:
                self._client.volumes.create(name=name, labels=keep)

    def remove_volumes(self, labels: dict[str, str]) -> list[str]:
        """Remove every volume carrying all ``labels``; returns their names."""
        removed = []
        try:
            for volume in self._client.volumes.list(filters={"label": _label_filter(labels)}):
                volume.remove(force=True)
                removed.append(str(volume.name))
        except DockerException as exc:
            raise _failed(exc) from exc
        return removed

    def container(self, name: str) -> ContainerInfo | None:
        try:
            c = self._client.containers.get(name)
        except NotFound:
            return None
        except DockerException as exc:
            raise _failed(exc) from exc
        return _info(c)

    def containers(self, labels: dict[str, str]) -> list[ContainerInfo]:
        try:
            found = self._client.containers.list(
                all=True, filters={"label": _label_filter(labels)}, ignore_removed=True
            )
        except DockerException as exc:
            raise _failed(exc) from exc
        return [_info(c) for c in found]

    def processes(self, name: str) -> tuple[int, int] | None:
        """(processes running, PID limit) of a running container; None when
        the engine does not say (no limit, or the container stopped: one
        being stopped as it is asked answers with an empty body)."""
        try:
            stats = self._client.api.stats(name, stream=False, one_shot=True)
        except (DockerException, ValueError):  # ValueError: that empty body, as JSON
            return None
        pids = stats.get("pids_stats") or {}
        if not pids.get("limit"):
            return None
        return int(pids.get("current", 0)), int(pids["limit"])

    def start_existing(self, name: str) -> None:
        try:
            self._client.containers.get(name).start()
        except DockerException as exc:
            raise _failed(exc) from exc

    def logs_tail(self, name: str, lines: int = 30) -> list[str]:
        try:
            raw = self._client.containers.get(name).logs(tail=lines)
        except DockerException:
            return []
        return raw.decode("utf-8", errors="replace").splitlines()

    def log_stream(self, name: str, *, tail: int, follow: bool) -> Iterator[bytes]:
        """A container's output (stdout and stderr, timestamped), the last
        ``tail`` lines, then (with ``follow``) as it comes."""
        try:
            stream = self._client.containers.get(name).logs(
                stream=True, follow=follow, tail=tail, timestamps=True
            )
        except DockerException as exc:
            raise _failed(exc) from exc
        try:
            yield from stream
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                _quietly(close, ignore=(Exception,))

    def stop(self, name: str, *, timeout: int) -> None:
        """SIGTERM (or the container's stop signal), then SIGKILL after ``timeout``; kept. Idempotent."""
        try:
            self._client.containers.get(name).stop(timeout=timeout)
        except NotFound:
            return
        except DockerException as exc:
            raise _failed(exc) from exc

    def stop_and_remove(self, name: str, *, timeout: int) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, SIGKILL, remove. Idempotent."""
        try:
            c = self._client.containers.get(name)
        except NotFound:
            return
        except DockerException as exc:
            raise _failed(exc) from exc
        try:
            if c.status in ("running", "restarting", "paused"):
                c.stop(timeout=timeout)
            c.remove(force=True)
        except NotFound:
            return
        except DockerException as exc:
            raise _failed(exc) from exc

    def events(self, labels: dict[str, str], actions: list[str]) -> Iterator[dict[str, Any]]:
        """Container events from now on (blocks until the next), as the engine
        reports them; raises EngineError when the engine goes away."""
        filters = {"type": "container", "event": actions, "label": _label_filter(labels)}
        try:
            yield from self._client.events(decode=True, filters=filters)
        except DockerException as exc:
            raise _failed(exc) from exc
        except OSError as exc:  # the connection dropped (an engine restart)
            raise EngineError(str(exc), kind=ErrorKind.refused) from exc

    def bridge_gateway(self) -> str:
        """The default bridge's address on the host (its IPv4 gateway): where a
        container's port published on 127.0.0.1 is reached from, through
        docker-proxy or the hairpin NAT alike; "" if the engine has none."""
        try:
            network = self._client.networks.get("bridge")
        except NotFound:
            return ""
        except DockerException as exc:
            raise _failed(exc) from exc
        for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
            try:
                address = ipaddress.ip_address(str(config.get("Gateway") or ""))
            except ValueError:
                continue
            if address.version == 4:
                return str(address)
        return ""

    def published_ports(self) -> set[int]:
        """Host ports published by any container on this engine."""
        ports: set[int] = set()
        try:
            # ignore_removed: another pipeline may remove a one-off container mid-listing
            for c in self._client.containers.list(all=True, ignore_removed=True):
                bindings = (c.attrs.get("HostConfig") or {}).get("PortBindings") or {}
                for entries in bindings.values():
                    for entry in entries or []:
                        if str(entry.get("HostPort", "")).isdigit():
                            ports.add(int(entry["HostPort"]))
        except DockerException as exc:
            raise _failed(exc) from exc
        return ports


def container_kwargs(
    *,
    command: list[str] | None,
    name: str,
    env: dict[str, str],
    labels: dict[str, str],
    volumes: dict[str, dict[str, str]] | None,
    limits: Limits | None,
) -> dict[str, Any]:
    """The Docker SDK's arguments for any container of an app, the release's
    one-off and the long-running ones alike: detached, with its env, labels
    and volumes, boxed by ``limits``."""
    return {
        "command": command,
        "name": name,
        "environment": env,
        "labels": labels,
        "detach": True,
        "volumes": volumes or None,
        **(limits.create_kwargs() if limits else {}),
    }


def serving_kwargs(*, container_port: int, host_ip: str, host_port: int | None) -> dict[str, Any]:
    """What a long-running container adds: published on host_ip:host_port
    only (nothing published when host_port is None: a worker), restarted
    unless stopped, an init, its log kept to 30 MB."""
    return {
        "ports": {f"{container_port}/tcp": (host_ip, host_port)} if host_port else None,
        "restart_policy": {"Name": "unless-stopped"},
        "init": True,
        "log_config": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
    }


def _info(c: Any) -> ContainerInfo:
    state = c.attrs.get("State") or {}
    return ContainerInfo(
        name=str(c.name),
        status=str(c.status),
        labels=dict(c.labels or {}),
        exit_code=state.get("ExitCode") if c.status == "exited" else None,
        started_at=str(state.get("StartedAt") or ""),
        restarts=int(c.attrs.get("RestartCount") or 0),
        health=str((state.get("Health") or {}).get("Status") or ""),
        oom_killed=bool(state.get("OOMKilled")),
        published=_published(c.attrs),
    )


def _published(attrs: dict[str, Any]) -> tuple[str, ...]:
    """The container's port bindings as the engine holds them (set at create, kept while stopped)."""
    bindings = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    return tuple(
        f"{b.get('HostIp') or '0.0.0.0'}:{b['HostPort']}"  # noqa: S104  (what the engine says, not a bind)
        for _port, binds in sorted(bindings.items())
        for b in binds or ()
        if b.get("HostPort")
    )


def _pump_logs(container: Any, on_line: LineSink) -> None:
    buffer = b""
    try:
        for chunk in container.logs(stream=True, follow=True):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                on_line(line.decode("utf-8", errors="replace").rstrip())
    except DockerException:
        pass
    if buffer.strip():
        on_line(buffer.decode("utf-8", errors="replace").rstrip())


def _label_filter(labels: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in labels.items()]


def _explain(exc: BaseException) -> str:
    if isinstance(exc, APIError):
        return str(exc.explanation or exc)
    return str(exc)


def _said(message: str) -> EngineError:
    """An error the engine reported in words only (a build's or a load's stream)."""
    return EngineError(message, kind=_kind_said(message) or ErrorKind.other)


def _failed(exc: BaseException, message: str | None = None) -> EngineError:
    """The SDK's ``exc`` as an EngineError: its message (or ``message``) and its kind."""
    said = _explain(exc)
    kind = _kind_said(said)
    if kind is None and isinstance(exc, NotFound):  # ImageNotFound too
        kind = ErrorKind.not_found
    elif kind is None and isinstance(exc, APIError):
        kind = {404: ErrorKind.not_found, 409: ErrorKind.conflict}.get(exc.status_code or 0)
    return EngineError(said if message is None else message, kind=kind or ErrorKind.other)


def _kind_said(said: str) -> ErrorKind | None:
    """The kinds the engine tells only in words: a full disk, a taken port."""
    if says_disk_full(said):
        return ErrorKind.disk_full
    lowered = said.lower()
    if any(words in lowered for words in _PORT_TAKEN_WORDS):
        return ErrorKind.port_taken
    return None


def _quietly(
    action: Callable[[], object], *, ignore: Iterable[type[BaseException]] = (DockerException,)
) -> None:
    try:
        action()
    except tuple(ignore):
        pass


def _drop_connection(response: Any) -> None:
    """Shut the socket under a streaming response, waking its reader (a plain
    close would not interrupt a thread blocked in recv)."""
    connection = getattr(getattr(response, "raw", None), "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        _quietly(lambda: sock.shutdown(socket.SHUT_RDWR), ignore=(OSError,))
    _quietly(response.close, ignore=(Exception,))
