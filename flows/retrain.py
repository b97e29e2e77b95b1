"""The retrain flow: demo data (if no dataset given) -> validate -> preprocess -> train ->
evaluate -> register/gate, each a Prefect task around the same stage function the CLI runs.

Run: `mmops run` (or `python -m flows.retrain`).
"""

from __future__ import annotations

from pathlib import Path

from flows import configure_tool_env  # noqa: F401  (sets PREFECT_HOME before prefect loads)
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mmops import stages
from mmops.config import load_params
from mmops.flatten import flatten


def _task(fn, name: str, **kwargs):
    return task(fn, name=name, cache_policy=NO_CACHE, **kwargs)


demo_data = _task(stages.demo_data, "demo_data")


@task(name="validate", cache_policy=NO_CACHE)
def validate(params, data: Path):
    """Validate; the report becomes a Prefect artifact whether the data passed or not."""
    try:
        return stages.validate(params, data)
    finally:
        report = stages.validation_json(params).with_suffix(".md")
        if report.exists():
            create_markdown_artifact(key="validation-report", markdown=report.read_text(), description="data validation")


preprocess = _task(stages.preprocess, "preprocess")
train = _task(stages.train, "train")
evaluate = _task(stages.evaluate, "evaluate")
register = _task(stages.register, "register")


def metrics_markdown(metrics: dict) -> str:
    rows = ["| metric | value |", "| --- | --- |"]
    for key, value in flatten(metrics).items():
        rows.append(f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |")
    return "\n".join(rows) + "\n"


@flow(name="mmops-retrain", log_prints=True)
def retrain(params_path: str | None = "params.yaml", overrides: list[str] | None = None, data_dir: str | None = None) -> dict:
    """Run the whole pipeline once; returns the evaluation metrics and the registry decision."""
    params = load_params(params_path, overrides)
    data = Path(data_dir) if data_dir else demo_data(params)
    validate(params, data)
    preprocess(params, data)
    train(params)
    metrics = evaluate(params)
    result = register(params, data)
    create_markdown_artifact(key="test-metrics", markdown=metrics_markdown(metrics), description="test split")
    create_markdown_artifact(
        key="gate-decision", markdown=(params.paths.reports / "gate.md").read_text(), description="promotion gate"
    )
    return {"metrics": metrics, "registry": result}


if __name__ == "__main__":
    retrain()
