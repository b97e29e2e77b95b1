"""Featurizing on a real engine: in the Prefect flow, each shard job is a Prefect task run, mapped
over a Dask cluster by `prefect_dask.DaskTaskRunner`.

    preprocess (task run) -> stages.preprocess(..., mapper=dask_map(store))
                              -> featurize_shard x N (task runs, children of preprocess, on Dask workers)

The cluster is a `distributed.LocalCluster` of `features.store.workers` processes (one thread each),
started for the mapping and stopped after it, or the running scheduler at `features.store.dask_address`:
its scheduler and workers need this environment (`mmops` and its dependencies: the scheduler unpickles
every task it is sent), and the workers must reach this flow's Prefect API. One shard, or one local
worker, is featurized in this process: a cluster would only add its start-up time.

The bytes written do not depend on the engine: `featurize_shard` depends only on its job.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from mmops.config import StoreConfig

if TYPE_CHECKING:
    from mmops.features.preprocess import Mapper


def task_runner(store: StoreConfig, shards: int):
    """The `DaskTaskRunner` that featurizes `shards` shard jobs: at `dask_address`, else a LocalCluster."""
    from prefect_dask import DaskTaskRunner

    if store.dask_address:
        return DaskTaskRunner(address=store.dask_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": store.resolved_workers(shards),
            "threads_per_worker": 1,  # one process per core; the nanny sets OMP/MKL threads to 1 too
            "processes": True,
            "dashboard_address": None,  # no dashboard; the scheduler's HTTP server (health) on a free port:
            "scheduler_kwargs": {"dashboard_address": ":0"},  # its default, 8787, clashes between runs
        },
    )


def in_process(store: StoreConfig, shards: int) -> bool:
    """Featurize here rather than start a cluster: one shard, or one local worker."""
    return shards <= 1 or (not store.dask_address and store.resolved_workers(shards) <= 1)


def dask_map(store: StoreConfig) -> Mapper:
    """A `Mapper` for `stages.preprocess` inside a flow's task: each item of `map(fn, items)` a task run
    of `fn` on the Dask cluster, results in order (the first failed item's error is raised)."""

    def run(fn: Callable[[Any], Any], items: list) -> list:
        if in_process(store, len(items)):
            return [fn(item) for item in items]
        (name,) = inspect.signature(fn).parameters  # the one parameter mapped over
        mapped = task(fn, name=fn.__name__, cache_policy=NO_CACHE, persist_result=False)
        # A runner in this task, not a subflow: the serialized flow-run context that travels with each
        # task run holds the flow and its parameters, so a subflow given `items` would send every job
        # with every job.
        with workers_reach_this_api(), task_runner(store, len(items)) as runner:  # the cluster starts at the first submit
            futures = runner.map(mapped, {name: items})
            return [future.result() for future in futures]

    return run


@contextmanager
def workers_reach_this_api() -> Iterator[None]:
    """Name this run's Prefect API in the settings that travel with each task run to the workers.

    With no PREFECT_API_URL (a temporary server in this process), each worker process would
    otherwise start a temporary server of its own and record its task runs there."""
    from prefect.context import get_run_context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    api = str(get_run_context().client.api_url).rstrip("/")
    with temporary_settings(updates={PREFECT_API_URL: api}):
        yield
