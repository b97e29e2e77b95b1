"""Stage `register`: log the run, register the pyfunc as `challenger`, gate, maybe promote."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

import mmops
from mmops.config import Params
from mmops.data.manifest import read_manifest
from mmops.evaluate.metrics import classification_metrics
from mmops.flatten import flatten
from mmops.registry.gate import GateDecision, decide, render_markdown
from mmops.registry.lineage import dvc_data_md5, git_commit, params_hash, pip_requirements
from mmops.registry.pyfunc import MODEL_DIR_ARTIFACT, MultimodalPyfunc
from mmops.registry.tracking import setup_mlflow

CHALLENGER, CHAMPION = "challenger", "champion"


class RegistrationRefused(RuntimeError):
    """Raised when the inputs of a registration are not trustworthy (e.g. failed validation)."""


def test_frame(data_dir: Path, features_dir: Path) -> pd.DataFrame:
    """The frozen test split as raw rows with absolute media paths (what a client would send)."""
    df = read_manifest(data_dir).drop(columns=["split"], errors="ignore")
    splits = pd.read_csv(Path(features_dir) / "splits.csv", dtype=str)
    df = df.merge(splits, on="sample_id")
    test = df[df["split"] == "test"].reset_index(drop=True)
    for column in ("image", "audio"):
        test[column] = [str(Path(data_dir).resolve() / p) if p else "" for p in test[column]]
    return test


def score_registered(model_uri: str, frame: pd.DataFrame) -> dict:
    """Score a registered pyfunc on raw rows with the same metrics as `evaluate`."""
    import mlflow

    predictions = mlflow.pyfunc.load_model(model_uri).predict(frame[["text", "image", "audio"]])
    return classification_metrics(list(frame["label"]), list(predictions["label"]))


def register(
    model_dir: Path,
    metrics_dir: Path,
    validation_json: Path,
    features_dir: Path,
    data_dir: Path,
    params: Params,
    out_dir: Path,
) -> dict:
    """Log and register the model, then promote it to `champion` if the gate passes.

    Writes `out_dir/registry.json` (version, decision, rules) and `out_dir/gate.md`.
    """
    validation = json.loads(Path(validation_json).read_text())
    if not validation.get("passed"):
        raise RegistrationRefused(f"data validation failed ({validation_json}); nothing is registered")
    metrics = json.loads((Path(metrics_dir) / "metrics.json").read_text())
    history = json.loads((Path(model_dir) / "history.json").read_text())
    name = params.registry.model_name
    commit, dirty = git_commit()
    lineage = {
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        "data_hash": str(validation.get("data_hash")),
        "params_hash": params_hash(params.dump()),
        "dvc_data_md5": dvc_data_md5(data_dir) or "not tracked by dvc",
    }

    mlflow = setup_mlflow(params.registry.experiment)
    client = mlflow.MlflowClient()
    with mlflow.start_run() as run:
        mlflow.set_tags(lineage)
        flat_params = flatten(params.dump())
        mlflow.log_params({k: str(v)[:6000] for k, v in flat_params.items()})
        for row in history["epochs"]:
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        mlflow.log_metrics(
            {f"test_{k}": float(v) for k, v in flatten(metrics).items() if isinstance(v, (int, float))}
        )
        mlflow.log_artifacts(str(metrics_dir), "evaluation")
        for report in (Path(validation_json), Path(validation_json).with_suffix(".md")):
            if report.exists():
                mlflow.log_artifact(str(report), "validation")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=MultimodalPyfunc(),
            artifacts={MODEL_DIR_ARTIFACT: str(model_dir)},
            code_paths=[str(Path(mmops.__file__).parent)],
            pip_requirements=pip_requirements(),
            registered_model_name=name,
        )
        version = str(info.registered_model_version)
        client.set_registered_model_alias(name, CHALLENGER, version)

        champion = _current_champion(client, name)
        champion_metrics = None
        if champion is not None:
            champion_metrics = score_registered(f"models:/{name}/{champion}", test_frame(data_dir, features_dir))
            mlflow.log_metrics({f"champion_{k}": v for k, v in champion_metrics.items()})
        decision = decide(metrics, champion_metrics, True, params.gate, champion)
        report = render_markdown(decision, name, version)
        mlflow.log_text(report, "gate/gate.md")
        _tag_version(client, name, version, decision, lineage | {"run_id": run.info.run_id})
        if decision.promote:
            client.set_registered_model_alias(name, CHAMPION, version)

    result = {
        "model_name": name,
        "version": version,
        "run_id": run.info.run_id,
        "promoted": decision.promote,
        "champion_version": version if decision.promote else champion,
        "previous_champion": champion,
        "decision": decision.model_dump(),
        "tracking_uri": mlflow.get_tracking_uri(),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "registry.json").write_text(json.dumps(result, indent=2))
    (out_dir / "gate.md").write_text(report)
    return result


def _current_champion(client, name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def _tag_version(client, name: str, version: str, decision: GateDecision, lineage: dict) -> None:
    tags = {f"lineage.{k}": v for k, v in lineage.items()}
    tags["gate.decision"] = "promoted" if decision.promote else "rejected"
    tags["gate.champion_compared"] = decision.champion_version or "none"
    for r in decision.rules:
        tags[f"gate.{r.rule}"] = f"{'pass' if r.passed else 'fail'} value={r.value} threshold={r.threshold}"
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
