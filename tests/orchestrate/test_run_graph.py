"""The flow's stages are chained in Prefect's run graph: each stage's task run waits for the one
before it (`wait_for`), recorded as `task_inputs` on the server, even when a stage is reused."""

from __future__ import annotations

import time

import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from mmops.orchestrate.retrain import run_cached

pytestmark = pytest.mark.slow  # the session's shared Prefect server
STAGES = ("validate", "preprocess", "train", "evaluate", "register")


class FakeCache:
    """What run_cached needs of a StageCache: a stage name, staleness, a key and a stamp."""

    def __init__(self, stage: str):
        self.stage, self.key = stage, f"graph-test-{stage}"

    def staleness(self):
        return "test"

    def record(self):
        pass


@task(cache_policy=NO_CACHE)
def stage(name: str) -> str:
    return name


@flow(name="graph-test")
def chained() -> list[str]:
    upstream: list = []
    return [run_cached(stage.with_options(name=s), FakeCache(s), False, None, s, after=upstream) for s in STAGES]


def test_each_stage_waits_for_the_one_before(prefect_api):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    state = chained(return_state=True)
    assert state.result() == list(STAGES)
    flow_runs = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    expected = {"validate": [], "preprocess": ["validate"], "train": ["preprocess"],
                "evaluate": ["train"], "register": ["evaluate"]}
    deadline = time.monotonic() + 60
    while True:  # task runs reach the server through events: wait until all five are there
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=flow_runs)
        by_id = {r.id: r for r in runs}
        edges = {r.name.split("-")[0]: [by_id[i.id].name.split("-")[0] if i.id in by_id else "?"
                                        for i in r.task_inputs.get("wait_for", [])] for r in runs}
        if edges == expected or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert edges == expected
