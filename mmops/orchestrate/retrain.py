"""The retrain flow: demo data (if no dataset given) -> validate -> preprocess -> train ->
evaluate -> register/gate, each a Prefect task around the same stage function the CLI runs.

A stage whose last result still stands is not run again (mmops/orchestrate/uptodate.py: dvc.lock
when the run is the pipeline dvc.yaml declares, content-hash stamps otherwise); its task run is
`Cached` and its result is read from its outputs. `force=True` (`mmops run --force`) reruns everything. Each stage's task run waits for the one before it
(`wait_for`), so the Prefect run graph shows validate -> preprocess -> train -> evaluate -> register
even though the stages pass files, not values. Tasks that write storage or talk to MLflow retry
with exponential backoff (`orchestration` in params.yaml). One retrain runs at a time
(a global concurrency limit), and a failed run calls `mmops.orchestrate.notify.on_flow_failure`.

Run: `mmops run` (or `python -m mmops.orchestrate.retrain`); deployments: mmops/orchestrate/deploy.py.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed

from mmops import stages
from mmops.catalog import Catalog
from mmops.config import Params, RetryPolicy
from mmops.config.resolved import Resolved
from mmops.env import configure_tool_env  # noqa: F401  (sets PREFECT_HOME before prefect loads)
from mmops.errors import UserError
from mmops.flatten import flatten
from mmops.orchestrate.engine import dask_map
from mmops.orchestrate.notify import on_flow_failure
from mmops.orchestrate.uptodate import (
    DEMO_STAGE,
    DvcStage,
    Record,
    demo_in_pipeline,
    dvc_root,
    registry_unchanged,
    run_summary,
    stage_record,
    stored_result,
    with_registry_state,
)
from mmops.params_file import load_params

CONCURRENCY_LIMIT = "mmops-retrain"


class RegistryUnavailable(RuntimeError):
    """The MLflow tracking server could not be reached; the message names it and the attempt."""


def _permanent_errors() -> tuple[type[BaseException], ...]:
    """Errors that retrying cannot fix: bad data, bad params, refused registration (`UserError`), bugs."""
    return (UserError, ValueError, KeyError)


def _retry_transient(task, task_run, state) -> bool:
    """Prefect `retry_condition_fn`: retry infrastructure errors, not errors in the inputs."""
    error = state.data if isinstance(state.data, BaseException) else None
    return not isinstance(error, _permanent_errors())


def retry_options(policy: RetryPolicy) -> dict[str, Any]:
    return {
        "retries": policy.retries,
        "retry_delay_seconds": policy.delays() or 0,
        "retry_condition_fn": _retry_transient,
        "timeout_seconds": policy.timeout_seconds,
    }


# -- tasks: thin wrappers, one per stage ------------------------------------------------------


def _task(fn, name: str):
    return task(fn, name=name, cache_policy=NO_CACHE)


demo_data = _task(stages.demo_data, "demo_data")


@task(name="hash_data", cache_policy=NO_CACHE)
def hash_data(data: Path) -> str:
    """Content hash of the dataset (manifest + every media file): the key of everything after."""
    from mmops.data.hashing import dataset_hash

    return dataset_hash(data)


@task(name="validate", cache_policy=NO_CACHE)
def validate(params: Params, paths: Catalog) -> dict:
    """Validate; a failure raises DataValidationError naming the samples and rules."""
    report = stages.validate(params, paths)
    return {"passed": report.passed, "data_hash": report.data_hash}


@task(name="preprocess", cache_policy=NO_CACHE)
def preprocess(params: Params, paths: Catalog) -> Resolved:
    """Featurize; with several shards, each is a task run on a Dask cluster (mmops/orchestrate/engine.py)."""
    return stages.preprocess(params, paths, mapper=dask_map(params.features.store))


@task(name="train", cache_policy=NO_CACHE)
def train(params: Params, paths: Catalog) -> Path:
    """Train; a retried attempt resumes from the last epoch checkpoint when there is one."""
    from prefect.runtime import task_run

    resume = task_run.run_count > 1 and paths.resume_state.exists()
    return stages.train(params, paths, resume=resume)


evaluate = _task(stages.evaluate, "evaluate")


@task(name="register", cache_policy=NO_CACHE)
def register(params: Params, paths: Catalog) -> dict:
    """Register and gate; an unreachable MLflow becomes RegistryUnavailable (retried)."""
    from prefect.runtime import task_run

    from mmops.registry.tracking import tracking_uri

    try:
        return stages.register(params, paths)
    except Exception as err:
        reason = _connection_error(err)
        if reason is None:
            raise
        raise RegistryUnavailable(
            f"MLflow tracking server {tracking_uri()} is unreachable ({reason}); attempt {task_run.run_count} of "
            f"{params.orchestration.mlflow.retries + 1}. Registration did not complete and no alias was changed."
        ) from err


def _connection_error(err: BaseException) -> str | None:
    """A one-line reason when `err` (or what it wraps) is a network failure, else None."""
    import requests

    seen = err
    while seen is not None:
        if isinstance(seen, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
            text = str(seen)
            for marker in ("Connection refused", "timed out", "Name or service not known", "Connection reset"):
                if marker in text:
                    return marker.lower()
            return type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    return None


# -- caching ----------------------------------------------------------------------------------


@task(name="reuse", cache_policy=NO_CACHE)
def reuse(stage: str, paths: Catalog, why: str):
    """A stage whose last result still stands: its outputs are read back, nothing runs (state `Cached`)."""
    return Completed(name="Cached", message=why, data=stored_result(stage, paths))


def run_cached(tsk, cache: Record, force: bool, policy: RetryPolicy | None, *args,
               fresh: Callable[[], bool] | None = None, after: list | None = None, paths: Catalog | None = None):
    """Run `tsk(*args)` unless `cache` says its last result still stands; then reuse that result.

    A reused stage is a task run named like the stage in state `Cached`, whose result is read from
    its output files (`uptodate.stored_result`): the record is the stamp or dvc.lock, never Prefect's
    result store. `after`: the states of the upstream stages (recorded by Prefect as this task run's
    `wait_for` inputs: the edges of the run graph); the task's final state is appended to it."""
    why = "forced" if force else cache.staleness()
    if why is None and fresh is not None and not fresh():
        why = "the recorded registration no longer matches the registry"
    record = "dvc.lock" if isinstance(cache, DvcStage) else "stamp"
    get_run_logger().info("%s: %s", cache.stage, f"up to date ({record}), reusing its outputs" if why is None
                          else f"running ({why})")
    wait_for = list(after or []) or None
    if why is None:
        state = reuse.with_options(name=tsk.name)(cache.stage, paths, f"up to date ({record})",
                                                  return_state=True, wait_for=wait_for)
    else:
        state = tsk.with_options(**(retry_options(policy) if policy is not None else {}))(
            *args, return_state=True, wait_for=wait_for)
    if after is not None:
        after[:] = [state]
    result = state.result()  # raises the task's error
    if why is not None:
        cache.record()
    return result


# -- artifacts --------------------------------------------------------------------------------


def metrics_markdown(metrics: dict) -> str:
    rows = ["| metric | value |", "| --- | --- |"]
    for key, value in flatten(metrics).items():
        rows.append(f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |")
    return "\n".join(rows) + "\n"


def _publish_validation(paths: Catalog) -> None:
    report = paths.validation_md
    if report.exists():
        create_markdown_artifact(key="validation-report", markdown=report.read_text(), description="data validation")


def mlflow_links(registry: dict) -> dict[str, str]:
    """Web-UI links to the MLflow run and model version; none for a file or database store."""
    uri = registry["tracking_uri"]
    if not uri.startswith(("http://", "https://")):
        return {}
    from mlflow import MlflowClient

    base = uri.rstrip("/")
    experiment = MlflowClient(uri).get_run(registry["run_id"]).info.experiment_id
    return {
        "run": f"{base}/#/experiments/{experiment}/runs/{registry['run_id']}",
        "model_version": f"{base}/#/models/{registry['model_name']}/versions/{registry['version']}",
    }


def publish_results(paths: Catalog, metrics: dict, registry: dict) -> None:
    """Metrics table, gate decision and where the model lives in MLflow, as Prefect artifacts."""
    create_markdown_artifact(key="test-metrics", markdown=metrics_markdown(metrics), description="test split")
    create_markdown_artifact(
        key="gate-decision", markdown=paths.gate_md.read_text(), description="promotion gate"
    )
    links = mlflow_links(registry)
    create_table_artifact(
        key="mlflow-model",
        table=[
            {"item": "model", "value": f"{registry['model_name']} v{registry['version']}"},
            {"item": "promoted to champion", "value": str(registry["promoted"])},
            {"item": "champion", "value": f"v{registry['champion_version']}" if registry["champion_version"] else "none"},
            {"item": "pinned", "value": (f"v{registry['pin']['version']} by {registry['pin']['actor']}: "
                                         f"{registry['pin']['reason']} (`mmops release` resumes automatic promotion)")
             if registry.get("pin") else "no"},
            {"item": "MLflow run", "value": registry["run_id"]},
            {"item": "tracking URI", "value": registry["tracking_uri"]},
            {"item": "load with", "value": f"models:/{registry['model_name']}/{registry['version']}"},
            {"item": "browse", "value": links.get("model_version")
             or f"mlflow ui --backend-store-uri {registry['tracking_uri']}"},
        ],
        description="MLflow run and model version",
    )
    for name, url in links.items():
        create_link_artifact(key=f"mlflow-{name.replace('_', '-')}", link=url, link_text=f"MLflow {name.replace('_', ' ')}")


# -- the flow ---------------------------------------------------------------------------------


@contextmanager
def one_retrain_at_a_time(params: Params):
    """Hold a slot of the global concurrency limit `mmops-retrain` (created if missing)."""
    from prefect import get_client
    from prefect.concurrency.sync import concurrency

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(CONCURRENCY_LIMIT, params.orchestration.max_concurrent_runs)
    with concurrency(CONCURRENCY_LIMIT, occupy=1, strict=True, lease_duration=600):
        yield


@flow(name="mmops-retrain", log_prints=True, on_failure=[on_flow_failure], on_crashed=[on_flow_failure])
def retrain(
    params_path: str | None = "params.yaml",
    overrides: list[str] | None = None,
    data_dir: str | None = None,
    force: bool = False,
) -> dict:
    """Run the whole pipeline once; returns the evaluation metrics and the registry decision."""
    params = load_params(params_path, overrides)
    paths = Catalog.from_paths(params.paths, data=data_dir)
    orch = params.orchestration
    root = dvc_root(params_path, overrides, data_dir, paths)
    with one_retrain_at_a_time(params):
        upstream: list = []  # the state of the last stage run: the next one waits for it (run graph edges)
        if root is not None and demo_in_pipeline(root, paths):
            run_cached(demo_data, DvcStage(root, DEMO_STAGE), force, None, params, paths, after=upstream, paths=paths)
        elif data_dir is None and not stages.holds_user_data(paths.data):  # paths.data may name the team's own data
            demo_data(params, paths)
        data_hash = hash_data(paths.data) if root is None else None  # dvc.lock hashes the data itself

        def run_stage(name: str, tsk, policy: RetryPolicy | None, **kw):
            record = stage_record(name, params, paths, root, data_hash)
            return run_cached(tsk, record, force, policy, params, paths, after=upstream, paths=paths, **kw)

        try:
            run_stage("validate", validate, None)
        finally:
            _publish_validation(paths)
        run_stage("preprocess", preprocess, orch.storage)
        run_stage("train", train, orch.storage)
        metrics = run_stage("evaluate", evaluate, orch.storage)
        result = run_stage("register", register, orch.mlflow, fresh=lambda: registry_unchanged(paths))
        result = with_registry_state(result)
        publish_results(paths, metrics, result)
        get_run_logger().info(
            "%s v%s: %s", result["model_name"], result["version"],
            "promoted to champion" if result["promoted"] else f"not promoted; champion v{result['champion_version']}"
            + (f" (pinned by {result['pin']['actor']}: {result['pin']['reason']})" if result.get("pin") else ""),
        )
    return run_summary(paths, metrics, result)


if __name__ == "__main__":
    retrain()
