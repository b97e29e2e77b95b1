"""Featurizing on an engine (mmops/orchestrate/engine.py): shard jobs mapped as Prefect task runs
over a real Dask cluster, or over a local process pool, write the same bytes as one process."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from dask_cluster import dask_cluster
from datagen.unlike_demo import make_dataset
from prefect import flow
from servers import prefect_server

from mmops import stages
from mmops.catalog import Catalog
from mmops.config import StoreConfig
from mmops.features.preprocess import _extractor, local_map
from mmops.orchestrate import engine


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(Prefect API, Dask scheduler address): a Prefect server, and a scheduler with two worker
    processes, all three importing the featurizing code while the server starts."""
    root = tmp_path_factory.mktemp("engine")
    with dask_cluster(root / "dask", workers=2, preload=("mmops.features.preprocess",)) as dask, \
            prefect_server(root / "prefect") as api:
        yield api, dask.wait()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory, tiny_text_model):
    """A validated dataset unlike the demo: text + RGB images, string labels."""
    from pipeline_overrides import overrides_for

    from mmops.params_file import load_params

    root = tmp_path_factory.mktemp("shapes")
    data = make_dataset(root / "data", n_per_class=10, variant="no_audio")
    params = load_params(None, [*overrides_for(root, tiny_text_model), f"paths.data={data}"])
    stages.validate(params, Catalog.from_paths(params.paths))
    return params


def sharded(params, out: Path, shard_mb: float, **store):
    """`params` writing features (and their cache) under `out`, in shards of `shard_mb`."""
    features = params.features.model_copy(update={"store": StoreConfig(shard_mb=shard_mb, **store)})
    paths = params.paths.model_copy(update={"features": out / "features", "cache": out / "cache"})
    params = params.model_copy(update={"features": features, "paths": paths})
    return params, Catalog.from_paths(params.paths)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` (shards, each split's index.json, meta, splits) by its bytes; resolved.yaml
    without `features.store`, the only place that records the engine settings."""
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    resolved = yaml.safe_load(files["resolved.yaml"])
    assert resolved["features"].pop("store")
    files["resolved.yaml"] = yaml.safe_dump(resolved).encode()
    return files


def shard_count(features: Path) -> int:
    return len(list(features.glob("*/*.safetensors")))


def calls(info) -> int:
    """Shard jobs a process featurized: each one asks `_extractor` (an lru_cache) once."""
    return info.hits + info.misses


def featurize_in_a_flow(params, paths) -> list[str]:
    """Run the retrain flow's `preprocess` task in a flow; the states of the shard task runs that the
    Prefect server recorded for that flow run."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from mmops.orchestrate.retrain import preprocess

    @flow(name="featurize-test")
    def featurize():
        return preprocess(params, paths)

    state = featurize(return_state=True)
    state.result()
    runs = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    deadline = time.monotonic() + 60
    while True:  # task runs reach the server through events
        with get_client(sync_client=True) as client:
            shards = [r for r in client.read_task_runs(flow_run_filter=runs) if r.name.startswith("featurize_shard")]
        if len(shards) >= shard_count(paths.features) and all(r.state_name for r in shards) \
                or time.monotonic() > deadline:
            return sorted(r.state_name for r in shards)
        time.sleep(1)


@pytest.fixture(scope="module")
def one_process(request, tmp_path_factory):
    """`get(dataset)`: (its params, the files one in-process worker writes, their shard count), in
    shards of SHARD_MB; featurized once per module."""
    done = {}

    def get(dataset: str):
        if dataset not in done:
            base = request.getfixturevalue("prepared" if dataset == "avdigits" else "shapes")
            params, paths = sharded(base, tmp_path_factory.mktemp(f"one-{dataset}"), SHARD_MB[dataset])
            stages.preprocess(params, paths, mapper=local_map(1))
            done[dataset] = base, tree(paths.features), shard_count(paths.features)
        return done[dataset]

    return get


# a few shards per split: 32 rows of the demo's 3 modalities, 5 rows of text + 64 px RGB
SHARD_MB = {"avdigits": 0.5, "shapes": 0.25}


@pytest.mark.slow  # a Prefect server, a Dask scheduler and two worker processes
@pytest.mark.parametrize("dataset", ["avdigits", "shapes"])
def test_dask_workers_write_the_same_shards_as_one_process(dataset, one_process, cluster, tmp_path):
    from distributed import Client

    base, expected, shards = one_process(dataset)
    assert shards >= 6  # several shards: the work really is split
    _, address = cluster
    params, paths = sharded(base, tmp_path, SHARD_MB[dataset], dask_address=address)
    here = calls(_extractor.cache_info())
    with Client(address) as client:
        before = client.run(_extractor.cache_info)
        states = featurize_in_a_flow(params, paths)
        after = client.run(_extractor.cache_info)
    assert tree(paths.features) == expected
    per_worker = {w: calls(after[w]) - calls(before[w]) for w in after}
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values()), per_worker  # both workers featurized
    assert sum(per_worker.values()) == shards  # every shard once, on a worker
    assert calls(_extractor.cache_info()) == here  # and none in this process
    assert states == ["Completed"] * shards  # each shard a Prefect task run


@pytest.mark.slow  # a Prefect server
def test_no_scheduler_featurizes_on_the_local_pool(one_process, tmp_path, monkeypatch, prefect_api):
    """No `dask_address`: the flow maps the shards over the local process pool `mmops preprocess`
    uses (two processes here), never a cluster: the same bytes, none featurized in this process."""
    def no_cluster(*_):
        raise AssertionError("a Dask cluster was started without a dask_address")

    monkeypatch.setattr(engine, "task_runner", no_cluster)
    base, expected, shards = one_process("shapes")
    params, paths = sharded(base, tmp_path, SHARD_MB["shapes"], workers=2)
    from mmops.orchestrate.retrain import preprocess

    here = calls(_extractor.cache_info())
    flow(name="featurize-local-test")(lambda: preprocess(params, paths))()
    assert tree(paths.features) == expected
    assert calls(_extractor.cache_info()) == here  # featurized in the pool's processes


def test_local_processes_write_the_same_shards_as_one_process(one_process, tmp_path):
    """`mmops preprocess --workers 2` maps over `local_map(2)`: two processes, the same bytes."""
    from typer.testing import CliRunner

    from mmops.cli import app

    base, expected, shards = one_process("shapes")
    assert shards >= 6
    params, paths = sharded(base, tmp_path, SHARD_MB["shapes"])
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params.dump(), sort_keys=False))
    here = calls(_extractor.cache_info())
    result = CliRunner().invoke(app, ["preprocess", "--params", str(params_file), "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert tree(paths.features) == expected
    assert calls(_extractor.cache_info()) == here  # featurized in the pool's processes, not here


def test_one_shard_starts_no_cluster(monkeypatch):
    def no_cluster(*_):
        raise AssertionError("a cluster was started for one shard")

    monkeypatch.setattr(engine, "task_runner", no_cluster)
    assert list(engine.dask_map(StoreConfig(dask_address="tcp://127.0.0.1:1"))(lambda x: x * 2, [21])) == [42]
    assert list(engine.dask_map(StoreConfig(workers=1))(lambda x: x * 2, [1, 2, 3])) == [2, 4, 6]


def test_task_runner_is_the_given_scheduler():
    remote = engine.task_runner(StoreConfig(dask_address="tcp://10.0.0.5:8786"))
    assert remote.address == "tcp://10.0.0.5:8786" and not remote.cluster_kwargs


def test_workers_get_this_runs_api_when_none_is_configured(monkeypatch):
    """A temporary API server lives in this process only: its URL travels with the task runs."""
    from types import SimpleNamespace

    from prefect.settings import PREFECT_API_URL, temporary_settings

    run = SimpleNamespace(client=SimpleNamespace(api_url="http://127.0.0.1:8123/api/"))
    monkeypatch.setattr("prefect.context.get_run_context", lambda: run)
    with temporary_settings(updates={PREFECT_API_URL: None}):
        with engine.workers_reach_this_api():
            assert PREFECT_API_URL.value() == "http://127.0.0.1:8123/api"
        assert not PREFECT_API_URL.value()
    with temporary_settings(updates={PREFECT_API_URL: "http://server:4200/api"}), engine.workers_reach_this_api():
        assert PREFECT_API_URL.value() == "http://server:4200/api"
