"""Hot reload: the watcher swaps in a new version; in-flight work finishes on the old one."""

from __future__ import annotations

import asyncio
import threading

import pytest
from fastapi.testclient import TestClient

import mmops.serve.reloader as reloader
from mmops.inference.model_dir import load_model_dir
from mmops.serve.app import create_app
from mmops.serve.batching import MicroBatcher
from mmops.serve.reloader import ChampionWatcher, ModelHolder, ServedModel
from mmops.serve.settings import ServeSettings


class VersionedSource:
    """A registry stand-in: `version` is where the alias points; every version is the same folder."""

    def __init__(self, model_dir, version="1", broken=()):
        self.model_dir, self.version, self.broken = model_dir, version, set(broken)
        self.name, self.alias = "fake", "champion"
        self.loads: list[str] = []

    def current_version(self) -> str:
        if self.version is None:
            raise ConnectionError("registry unreachable")
        return self.version

    def load(self, version: str) -> ServedModel:
        self.loads.append(version)
        if version in self.broken:
            raise OSError("artifact download failed")
        return ServedModel(self.name, version, self.alias, f"models:/fake/{version}", load_model_dir(self.model_dir))


def test_app_picks_up_a_new_champion(served_model_dir):
    source = VersionedSource(served_model_dir)
    with TestClient(create_app(ServeSettings(poll_interval_s=0), source)) as c:
        body = {"instances": [{"text": "an odd number"}]}
        assert c.post("/predict", json=body).json()["predictions"][0]["model_version"] == "1"
        watcher = c.app.state.serve["watcher"]
        assert watcher.check_once() is False  # unchanged

        source.version = "2"
        assert watcher.check_once() is True
        assert c.get("/metadata").json()["version"] == "2"
        assert c.post("/predict", json=body).json()["predictions"][0]["model_version"] == "2"
        metrics = c.get("/metrics").text
        assert 'mmops_model_version{alias="champion",model="fake"} 2.0' in metrics
        assert 'mmops_model_reloads_total{result="swapped"} 1.0' in metrics


def test_failures_keep_the_current_model(served_model_dir):
    source = VersionedSource(served_model_dir, broken={"3"})
    holder = ModelHolder(source.load("1"))
    errors = []
    watcher = ChampionWatcher(source, holder, interval=0, on_error=lambda stage, err: errors.append(stage))

    source.version = None  # registry down
    assert watcher.check_once() is False and holder.current.version == "1"
    source.version = "3"  # a version that cannot be loaded
    assert watcher.check_once() is False and watcher.check_once() is False
    assert holder.current.version == "1"
    assert source.loads == ["1", "3"]  # a broken version is not downloaded again on every poll
    assert errors == ["resolve", "load"]
    source.version = "4"
    assert watcher.check_once() is True and holder.current.version == "4"


def test_background_thread_polls(served_model_dir):
    source = VersionedSource(served_model_dir)
    holder = ModelHolder(source.load("1"))
    swapped = threading.Event()
    watcher = ChampionWatcher(source, holder, interval=0.05, on_swap=lambda old, new: swapped.set())
    watcher.start()
    try:
        source.version = "2"
        assert swapped.wait(30)
        assert holder.current.version == "2"
    finally:
        watcher.stop()


def test_in_flight_batch_finishes_on_the_old_model(monkeypatch):
    """A batch takes `holder.current` once; a swap during the call does not change its answers."""
    monkeypatch.setattr(reloader, "warm_up", lambda loaded: None)
    old = ServedModel("m", "1", "champion", "models:/m/1", loaded=None)
    new = ServedModel("m", "2", "champion", "models:/m/2", loaded=None)
    holder = ModelHolder(old)
    started, release = threading.Event(), threading.Event()

    def run_batch(rows):
        served = holder.current
        started.set()
        assert release.wait(10)
        return [served.version for _ in rows]

    async def main():
        b = MicroBatcher(run_batch, max_batch_size=4, max_wait_ms=0)
        await b.start()
        try:
            first = asyncio.ensure_future(b.submit(["a", "b"]))
            await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
            holder.swap(new)  # the watcher's swap, mid-call
            release.set()
            return await first, await b.submit(["c"])
        finally:
            await b.stop()

    in_flight, after = asyncio.run(main())
    assert in_flight == ["1", "1"] and after == ["2"]


@pytest.mark.parametrize("interval", [0, -1])
def test_disabled_watcher_starts_no_thread(interval, served_model_dir):
    source = VersionedSource(served_model_dir)
    watcher = ChampionWatcher(source, ModelHolder(source.load("1")), interval=interval)
    watcher.start()
    assert watcher._thread is None
    watcher.stop()
