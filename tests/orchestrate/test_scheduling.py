"""`mmops schedule` for real: a Prefect server, a process work pool, the deployments and a process
worker, all started by the one command; runs triggered through the API and by the cron schedule.

MLflow is a SQLite file in the temp folder, so the worker's flow runs and this test see the same
registry. Everything the command started is stopped by PID when it gets Ctrl-C (last test).
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mmops.catalog import REGISTRY_JSON
from mmops.processes import stop_group

from pipeline_overrides import overrides_for
from servers import BIN, drain_prefect_clients, free_port

pytestmark = pytest.mark.slow
NAME = "mmops-scheduled"
AUTH = f"mmops:{secrets.token_urlsafe(24)}"
CRON, TIMEZONE = "* * * * *", "Europe/Berlin"
STAGES = ["validate", "preprocess", "train", "evaluate", "register"]


def _wait_for(pattern: str, log: Path, proc: subprocess.Popen, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text())
        if found:
            return found
        if proc.poll() is not None:
            raise RuntimeError(f"mmops schedule exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        time.sleep(0.2)
    raise TimeoutError(f"{pattern!r} not in {log} after {timeout}s:\n{log.read_text()[-4000:]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def stack(tmp_path_factory, small_dataset, tiny_text_model):
    """`mmops schedule` in a temp project folder; yields what it started."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    root = tmp_path_factory.mktemp("schedule")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    overrides = overrides_for(
        root / "run", tiny_text_model,
        **{"registry.model_name": NAME, "orchestration.schedule.cron": f"'{CRON}'",
           "orchestration.schedule.timezone": TIMEZONE, "orchestration.watch.interval_minutes": 1440},
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # so it starts its own server
    env |= {"MLFLOW_TRACKING_URI": uri, "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_UI_ENABLED": "false",
            "PREFECT_API_AUTH_STRING": AUTH}  # the server it starts wants this string from every client
    cmd = [str(BIN / "mmops"), "schedule", "--data", str(small_dataset), "--port", str(port)]
    cmd += [arg for o in overrides for arg in ("--set", o)]
    log = root / "schedule.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    old_uri = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        _wait_for(r"mmops schedule: ready", log, proc, timeout=300)
        text = log.read_text()
        pids = {name: int(pid) for name, pid in re.findall(r"started prefect (server|worker) \(pid (\d+)\)", text)}
        with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{port}/api",
                                         PREFECT_API_AUTH_STRING: AUTH}):
            from prefect.deployments import run_deployment

            # submitted now, without waiting: the worker runs it while the first tests check the stack
            first = run_deployment("mmops-retrain/manual", timeout=0)
            yield {"proc": proc, "log": log, "pids": pids, "root": root, "overrides": overrides,
                   "data": small_dataset, "uri": uri, "first": first}
            drain_prefect_clients()
    finally:
        stop_group(proc, timeout=90, sig=signal.SIGINT)  # a test failed before the Ctrl-C test: stop it by PID
        if old_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old_uri


def _client():
    from prefect import get_client

    return get_client(sync_client=True)


def _run(name: str, timeout: float = 900, **parameters):
    from prefect.deployments import run_deployment

    run = run_deployment(name, parameters=parameters or None, timeout=timeout, poll_interval=1)
    assert run.state.is_completed(), f"{name}: {run.state.name}: {run.state.message}"
    return run


def _finished(run, timeout: float = 900):
    """`run` (a flow run already submitted) once it reached a final state; it must have completed."""
    deadline = time.monotonic() + timeout
    while True:
        with _client() as client:
            run = client.read_flow_run(run.id)
        if run.state.is_final() or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert run.state.is_completed(), f"{run.name}: {run.state.name}: {run.state.message}"
    return run


def _stage_states(flow_run_id) -> dict[str, str]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with _client() as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {r.name.rsplit("-", 1)[0]: r.state.name for r in runs if r.name.rsplit("-", 1)[0] in STAGES}


@pytest.fixture(scope="module")
def first_run(stack):
    return _finished(stack["first"])


def test_the_started_prefect_server_refuses_clients_without_the_auth_string(stack):
    import base64

    import httpx

    url = re.search(r"API (http://\S+/api);", stack["log"].read_text()).group(1)
    assert httpx.post(f"{url}/deployments/filter", json={}, timeout=10).status_code == 401
    auth = {"Authorization": f"Basic {base64.b64encode(AUTH.encode()).decode()}"}
    assert httpx.post(f"{url}/deployments/filter", json={}, headers=auth, timeout=10).status_code == 200


def test_deployments_schedule_and_concurrency(stack):
    with _client() as client:
        scheduled = client.read_deployment_by_name("mmops-retrain/scheduled")
        manual = client.read_deployment_by_name("mmops-retrain/manual")
        limit = client.read_global_concurrency_limit_by_name("mmops-retrain")
        pool = client.read_work_pool("mmops-process")
    assert pool.type == "process"
    [schedule] = scheduled.schedules
    assert schedule.schedule.cron == CRON and schedule.schedule.timezone == TIMEZONE and schedule.active
    assert manual.schedules == []
    for d in (scheduled, manual):
        assert d.work_pool_name == "mmops-process"
        assert d.global_concurrency_limit.limit == 1 and d.concurrency_options.collision_strategy == "ENQUEUE"
        assert d.parameters["overrides"] == stack["overrides"] and d.parameters["data_dir"] == str(stack["data"])
        assert d.job_variables["working_dir"] == str(stack["root"])
    assert limit.limit == 1


def test_worker_runs_the_deployment_and_promotes(stack, first_run):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with _client() as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[first_run.id])))
    by_key = {a.key: a for a in artifacts}
    assert {"validation-report", "test-metrics", "gate-decision", "mlflow-model"} <= set(by_key)
    assert "| accuracy |" in by_key["test-metrics"].data and "macro_f1" in by_key["test-metrics"].data
    table = {row["item"]: row["value"] for row in _table(by_key["mlflow-model"].data)}
    champion = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_model_version_by_alias(NAME, "champion")
    gate = by_key["gate-decision"].data
    assert f"{NAME} v{champion.version}" in gate and "promote" in gate.lower()
    assert table["model"] == f"{NAME} v{champion.version}" and table["promoted to champion"] == "True"
    assert table["MLflow run"] == champion.run_id and table["tracking URI"] == stack["uri"]
    assert champion.tags["gate.decision"] == "promoted"


def _table(data):
    import json

    return json.loads(data) if isinstance(data, str) else data


def test_the_cron_schedule_fires_on_the_worker(stack, first_run):
    from prefect.client.schemas.filters import (
        DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
    )

    with _client() as client:
        deployment = client.read_deployment_by_name("mmops-retrain/scheduled")
    deadline = time.monotonic() + 240
    done = []
    while not done and time.monotonic() < deadline:
        with _client() as client:
            done = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["COMPLETED", "FAILED", "CRASHED"]))),
            )
        time.sleep(1)
    assert done, "no scheduled run finished within 4 minutes"
    run = done[0]
    assert run.state.is_completed(), run.state.message
    assert run.expected_start_time.second == 0  # on a minute boundary, as the cron says
    # the same data and params as the manual run: every stage came from the cache
    assert set(_stage_states(run.id).values()) == {"Cached"} or set(_stage_states(first_run.id).values()) == {"Cached"}
    with _client() as client:  # seen firing: the next tests' runs need not queue behind one cron run a minute
        client.pause_deployment(deployment.id)


def test_unchanged_rerun_hits_the_cache_and_force_does_not(stack, first_run):
    versions = {v.version for v in MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).search_model_versions(f"name='{NAME}'")}
    warm = _run("mmops-retrain/manual")
    assert _stage_states(warm.id) == {stage: "Cached" for stage in STAGES}
    assert {v.version for v in MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).search_model_versions(f"name='{NAME}'")} == versions

    forced = _run("mmops-retrain/manual", **{"force": True})
    assert forced.parameters["force"] is True
    states = _stage_states(forced.id)
    assert set(states) == set(STAGES) and "Cached" not in states.values()
    assert {v.version for v in MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).search_model_versions(f"name='{NAME}'")} > versions


def test_runs_never_overlap(stack, first_run):
    """One retrain at a time: the stage work of any two finished runs does not interleave."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId

    with _client() as client:
        runs = [r for r in client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["mmops-retrain"])))
                if r.state.is_completed()]
        spans = []
        for r in runs:
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id])))
            times = [(t.start_time, t.end_time) for t in tasks if t.start_time and t.end_time]
            spans.append((min(s for s, _ in times), max(e for _, e in times)))
    assert len(spans) >= 3
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end


def test_unreachable_mlflow_is_retried_then_fails_clearly(stack, first_run, monkeypatch):
    """Same data and params as the worker's runs, so every stage up to register comes from the cache."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from mmops.orchestrate.retrain import RegistryUnavailable, retrain

    registry_json = stack["root"] / "run" / "reports" / REGISTRY_JSON
    before = registry_json.read_text()
    champion = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_model_version_by_alias(NAME, "champion").version
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    overrides = stack["overrides"] + ["orchestration.mlflow.retries=2", "orchestration.mlflow.delay_seconds=0.5"]
    started = time.monotonic()
    state = retrain(params_path=None, overrides=overrides, data_dir=str(stack["data"]), return_state=True)
    assert state.is_failed()
    with pytest.raises(RegistryUnavailable, match=rf"MLflow tracking server {re.escape(dead)} is unreachable "
                                                    r"\(connection refused\); attempt 3 of 3"):
        state.result()
    assert time.monotonic() - started >= 0.5 + 1.0  # the backoff waits: 0.5 s, then 1 s

    with _client() as client:
        flow_run = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))[0]
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
    by_stage = {t.name.rsplit("-", 1)[0]: t for t in tasks}
    assert by_stage["register"].run_count == 3 and by_stage["register"].state.is_failed()
    assert {s: by_stage[s].state.name for s in STAGES[:-1]} == {s: "Cached" for s in STAGES[:-1]}

    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack["uri"])
    assert registry_json.read_text() == before  # no registration result written
    assert MlflowClient(stack["uri"]).get_model_version_by_alias(NAME, "champion").version == champion


def test_ctrl_c_stops_what_it_started(stack):
    proc, pids = stack["proc"], stack["pids"]
    assert set(pids) == {"server", "worker"} and all(_alive(p) for p in pids.values())
    drain_prefect_clients()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=90) == 0, stack["log"].read_text()[-3000:]
    text = stack["log"].read_text()
    assert f"stopped prefect worker (pid {pids['worker']})" in text
    assert f"stopped prefect server (pid {pids['server']})" in text
    assert not any(_alive(p) for p in pids.values())
