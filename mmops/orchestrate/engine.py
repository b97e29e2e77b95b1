"""Featurizing on a real engine: in the Prefect flow, each shard job is a Prefect task run, mapped
over a Dask cluster by `prefect_dask.DaskTaskRunner`.

    preprocess (task run) -> stages.preprocess(..., mapper=dask_map(store))
                              -> featurize_shard x N (task runs, children of preprocess, on Dask workers)

The cluster is the running scheduler at `features.store.dask_address`: its scheduler and workers need
this environment (`mmops` and its dependencies: the scheduler unpickles every task it is sent), and
the workers must reach this flow's Prefect API. Without an address, or for one shard, the flow
featurizes as `mmops preprocess` does, on a local pool of `features.store.workers` processes: a
LocalCluster on the same machine gave the same bytes and cost about 9 s more per run on 2 cores
(scheduler, nannies, worker imports; bench/bench_flow.py, 4 shards).

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


def task_runner(store: StoreConfig):
    """The `DaskTaskRunner` that featurizes on the scheduler at `dask_address`."""
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=store.dask_address)


def dask_map(store: StoreConfig) -> Mapper:
    """A `Mapper` for `stages.preprocess` inside a flow's task: each item of `map(fn, items)` a task run
    of `fn` on the Dask cluster at `dask_address`, results in order (the first failed item's error is
    raised); without an address, or for one item, the local pool `mmops preprocess` uses."""
    from mmops.features.preprocess import local_map

    def run(fn: Callable[[Any], Any], items: list) -> list:
        if not store.dask_address or len(items) <= 1:
            return list(local_map(store.resolved_workers(len(items)))(fn, items))
        (name,) = inspect.signature(fn).parameters  # the one parameter mapped over
        mapped = task(fn, name=fn.__name__, cache_policy=NO_CACHE, persist_result=False)
        # A runner in this task, not a subflow: the serialized flow-run context that travels with each
        # task run holds the flow and its parameters, so a subflow given `items` would send every job
        # with every job.
        with workers_reach_this_api(), task_runner(store) as runner:
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
