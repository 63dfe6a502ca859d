"""The drainer (agent/drainer.py): the old release's containers are stopped
after the drain, apart from the job that retired them."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from agent.deploylog import DeployLog
from agent.docker_engine import EngineError
from agent.drainer import Drainer
from paas.settings import Settings


class Engine:
    """Records each stop and when it came; ``fail`` names containers the engine refuses to stop."""

    def __init__(self) -> None:
        self.stopped: dict[str, float] = {}
        self.fail: set[str] = set()
        self.lock = threading.Lock()

    def stop_and_remove(self, name: str, *, timeout: int) -> None:
        if name in self.fail:
            raise EngineError("the engine is busy")
        with self.lock:
            self.stopped[name] = time.monotonic()


def drainer(settings: Settings, drain: float) -> tuple[Drainer, Engine]:
    engine = Engine()
    return Drainer(engine, settings.model_copy(update={"drain_seconds": drain})), engine  # type: ignore[arg-type]


def test_retire_returns_at_once_and_each_container_stops_after_its_drain(settings: Settings) -> None:
    d, engine = drainer(settings, 0.3)
    handed = time.monotonic()
    assert d.retire("shop", ["paas-shop-web-v1-1", "paas-shop-worker-v1-1"]) == [
        "paas-shop-web-v1-1",
        "paas-shop-worker-v1-1",
    ]
    assert time.monotonic() - handed < 0.1 and not engine.stopped
    assert set(d.draining("shop")) == {"paas-shop-web-v1-1", "paas-shop-worker-v1-1"}
    assert d.draining("other") == {}
    assert d.wait_idle(5)
    assert set(engine.stopped) == {"paas-shop-web-v1-1", "paas-shop-worker-v1-1"}
    assert min(engine.stopped.values()) - handed >= 0.3  # never before the drain is over
    assert d.draining() == {}


def test_a_container_handed_over_again_keeps_its_first_time(settings: Settings) -> None:
    d, engine = drainer(settings, 0.4)
    handed = time.monotonic()
    d.retire("shop", ["paas-shop-web-v1-1"])
    time.sleep(0.2)
    assert d.retire("shop", ["paas-shop-web-v1-1", "paas-shop-web-v2-1"]) == ["paas-shop-web-v2-1"]
    assert d.wait_idle(5)
    assert engine.stopped["paas-shop-web-v1-1"] - handed < 0.55
    assert engine.stopped["paas-shop-web-v2-1"] - handed >= 0.6


def test_taken_back_containers_are_not_stopped(settings: Settings) -> None:
    d, engine = drainer(settings, 0.3)
    d.retire("shop", ["paas-shop-web-v1-1", "paas-shop-worker-v1-1", "paas-shop-web-v2-1"])
    assert d.take_back(["paas-shop-web-v1-1", "paas-shop-worker-v1-1"])
    assert not d.take_back(["paas-shop-web-v1-1"])  # no longer draining: nothing to take
    assert not d.take_back(["paas-shop-web-v2-1", "paas-shop-web-v9-1"])  # not all of them: none
    assert d.wait_idle(5)
    assert set(engine.stopped) == {"paas-shop-web-v2-1"}


def test_an_app_deleted_meanwhile_is_forgotten(settings: Settings) -> None:
    d, engine = drainer(settings, 0.2)
    d.retire("shop", ["paas-shop-web-v1-1"])
    d.retire("blog", ["paas-blog-web-v1-1"])
    d.forget("shop")
    assert d.wait_idle(5)
    assert set(engine.stopped) == {"paas-blog-web-v1-1"}


def test_a_stop_the_engine_refuses_is_said_in_the_release_log_and_tried_again(settings: Settings) -> None:
    d, engine = drainer(settings, 0)
    engine.fail.add("paas-shop-web-v1-1")
    release_log = settings.release_log("shop", 2)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with DeployLog(release_log, under=settings.data_dir) as dlog:  # the job that retired them wrote it
        dlog.line("v2 is live")
    d.retire("shop", ["paas-shop-web-v1-1", "paas-shop-web-v1-2"], log_path=release_log)
    deadline = time.monotonic() + 5
    while "paas-shop-web-v1-2" not in engine.stopped and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    text = Path(release_log).read_text()
    assert "stopped paas-shop-web-v1-2 (drained)" in text
    assert "could not stop paas-shop-web-v1-1: the engine is busy; trying again in 30s" in text
    assert 29 < d.draining("shop")["paas-shop-web-v1-1"] <= 30


def test_close_finishes_the_drains_under_way(settings: Settings) -> None:
    d, engine = drainer(settings, 0.2)
    d.retire("shop", ["paas-shop-web-v1-1"])
    d.close(timeout=5)
    assert "paas-shop-web-v1-1" in engine.stopped


def test_a_stop_under_way_when_its_app_is_deleted_is_not_tried_again(settings: Settings) -> None:
    d, engine = drainer(settings, 0)
    gate, entered = threading.Event(), threading.Event()

    def refused(name: str, *, timeout: int) -> None:
        entered.set()
        gate.wait(5)
        raise EngineError("removal of container is already in progress")

    engine.stop_and_remove = refused  # type: ignore[method-assign]
    d.retire("shop", ["paas-shop-web-v1-1"])
    assert entered.wait(5)
    d.forget("shop")  # the delete job removes the app's containers itself
    gate.set()
    assert d.wait_idle(5)
    assert d.draining() == {}  # no retry: a new app "shop" may run a paas-shop-web-v1-1 soon


def test_a_container_that_serves_by_the_time_its_drain_ends_is_kept(settings: Settings) -> None:
    engine = Engine()
    live = {"paas-shop-web-v2-1"}  # a job made it after the list it came in was taken, then went live
    d = Drainer(
        engine,  # type: ignore[arg-type]
        settings.model_copy(update={"drain_seconds": 0.1}),
        needed=lambda app, name: name in live,
    )
    d.retire("shop", ["paas-shop-web-v1-1", "paas-shop-web-v2-1"])
    assert d.wait_idle(5)
    assert set(engine.stopped) == {"paas-shop-web-v1-1"}
