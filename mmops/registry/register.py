"""Stage `register`: log the run, register the pyfunc as `challenger`, gate, quantise, maybe promote.

Promotion is compare-and-set (mmops/registry/promotion.py): the champion is re-read under a lock
right before `champion` moves; if another run moved it since the gate compared, the gate runs
again against the new champion, still under the lock, and only a pass moves the alias.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import mmops
from mmops.config import Params
from mmops.data.hashing import dataset_hash
from mmops.flatten import flatten
from mmops.registry.gate import (
    GateDecision,
    check_metric_keys,
    decide,
    numeric,
    render_markdown,
    same_test_data_rule,
)
from mmops.registry.lineage import dvc_data_md5, frozen_test_hash, git_commit, model_hash, params_hash, pip_requirements
from mmops.registry.promotion import (
    CHALLENGER,
    CHAMPION,
    INT8_VERSION_TAG,
    compare_and_set,
    current_version,
    decision_rules,
)
from mmops.registry.pyfunc import MODEL_DIR_ARTIFACT, MultimodalPyfunc
from mmops.registry.scoring import frozen_test_rows, score_model
from mmops.registry.tracking import setup_mlflow

__all__ = ["CHALLENGER", "CHAMPION", "RegistrationRefused", "register"]


class RegistrationRefused(RuntimeError):
    """Raised when the inputs of a registration are not trustworthy (e.g. failed validation)."""


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

    Writes `out_dir/registry.json` (version, decision, rules, quantised variant) and `out_dir/gate.md`.
    """
    validation = json.loads(Path(validation_json).read_text())
    if not validation.get("passed"):
        raise RegistrationRefused(f"data validation failed ({validation_json}); nothing is registered")
    metrics = json.loads((Path(metrics_dir) / "metrics.json").read_text())
    check_metric_keys(params.gate, metrics)  # a typo in gate: fails before anything is registered
    history = json.loads((Path(model_dir) / "history.json").read_text())
    name = params.registry.model_name
    frame = frozen_test_rows(data_dir, features_dir)
    meta = Path(features_dir) / "meta.json"
    same_data = same_test_data_rule(
        json.loads(meta.read_text()).get("data_hash") if meta.exists() else None, dataset_hash(data_dir)
    )
    commit, dirty = git_commit()
    lineage = {
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        "data_hash": str(validation.get("data_hash")),
        "params_hash": params_hash(params.dump()),
        "dvc_data_md5": dvc_data_md5(data_dir) or "not tracked by dvc",
        "model_hash": model_hash(model_dir),
        "test_data_hash": frozen_test_hash(frame),
        "validation_report": str(validation_json),
    }

    mlflow = setup_mlflow(params.registry.experiment)
    client = mlflow.MlflowClient()
    with mlflow.start_run() as run:
        lineage["run_id"] = run.info.run_id
        mlflow.set_tags({k: v for k, v in lineage.items() if k != "run_id"})
        mlflow.log_params({k: str(v)[:6000] for k, v in flatten(params.dump()).items()})
        for row in history["epochs"]:
            mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        mlflow.log_metrics({f"test_{k}": v for k, v in numeric(metrics).items()})
        mlflow.log_artifacts(str(metrics_dir), "evaluation")
        for report in (Path(validation_json), Path(validation_json).with_suffix(".md")):
            if report.exists():
                mlflow.log_artifact(str(report), "validation")
        version = _log_pyfunc(mlflow, model_dir, name, "model")
        client.set_registered_model_alias(name, CHALLENGER, version)

        gate = _gate_function(mlflow, metrics, frame, params, name, version, same_data, lineage["test_data_hash"])
        champion = current_version(client, name, CHAMPION)
        decision = gate(champion)
        quant, int8_version = (None, None)
        if params.quantize.enabled:
            quant, int8_version = _quantize(mlflow, client, name, version, model_dir, features_dir, params, lineage)
        _tag_version(client, name, version, decision, lineage)  # before the move: history reads the int8 tag
        promoted, regated = False, None
        if decision.promote:
            moved = compare_and_set(
                client, name, version, champion, action="auto-promote", regate=gate,
                reason=f"gate passed in run {run.info.run_id}", rules=decision_rules(decision),
            )
            promoted, regated = moved.moved, moved.regated_against
            if moved.decision is not None:
                decision = moved.decision
        _tag_version(client, name, version, decision, {}, promoted=promoted, regated=regated)
        report = render_markdown(decision, name, version, extra=quant.markdown(int8_version) if quant else "")
        mlflow.log_text(report, "gate/gate.md")

    result = {
        "model_name": name,
        "version": version,
        "run_id": run.info.run_id,
        "promoted": promoted,
        "champion_version": current_version(client, name, CHAMPION),
        "previous_champion": decision.champion_version,
        "regated_against": regated,
        "decision": decision.model_dump(),
        "lineage": lineage,
        "quantized": (quant.model_dump() | {"version": int8_version}) if quant else None,
        "tracking_uri": mlflow.get_tracking_uri(),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "registry.json").write_text(json.dumps(result, indent=2))
    (out_dir / "gate.md").write_text(report)
    return result


def _log_pyfunc(mlflow, model_dir: Path, name: str, artifact_name: str) -> str:
    """Log `model_dir` as the raw-input pyfunc and register it; returns the new version."""
    info = mlflow.pyfunc.log_model(
        name=artifact_name,
        python_model=MultimodalPyfunc(),
        artifacts={MODEL_DIR_ARTIFACT: str(model_dir)},
        code_paths=[str(Path(mmops.__file__).parent)],
        pip_requirements=pip_requirements(),
        registered_model_name=name,
    )
    return str(info.registered_model_version)


def _gate_function(mlflow, metrics, frame, params: Params, name: str, version: str, same_data, test_hash: str
                   ) -> Callable[[str | None], GateDecision]:
    """champion version (or None) -> decision; challenger and champion re-scored on the same rows."""
    keys = list(params.gate.regression)
    challenger_scores: dict = {}

    def gate(champion: str | None) -> GateDecision:
        champion_scores = None
        if champion is not None and keys:
            if not challenger_scores:
                challenger_scores.update(score_model(f"models:/{name}/{version}", frame, keys))
            champion_scores = score_model(f"models:/{name}/{champion}", frame, keys)
            mlflow.log_metrics({f"champion_v{champion}_{k}": v for k, v in numeric(champion_scores).items()})
        elif champion is not None:
            champion_scores = {}
        return decide(
            metrics, champion_scores, True, params.gate, champion, challenger_scores=challenger_scores or None,
            same_data=same_data, test_data_hash=test_hash,
        )

    return gate


def _quantize(mlflow, client, name: str, version: str, model_dir: Path, features_dir: Path, params: Params,
              lineage: dict):
    """Compare a dynamic int8 variant with the fp32 model; register it when the accuracy drop is within limits."""
    from mmops.registry.quantize import quantize_and_compare

    with tempfile.TemporaryDirectory(prefix="mmops-int8-") as tmp:
        int8_dir = Path(tmp) / "model_int8"
        report = quantize_and_compare(model_dir, features_dir, params.quantize, int8_dir)
        mlflow.log_metrics({f"int8_{k}": float(v) for k, v in report.model_dump().items() if not isinstance(v, bool)})
        mlflow.log_text(report.markdown(), "gate/quantize.md")
        int8_version = None
        if report.accepted:
            int8_version = _log_pyfunc(mlflow, int8_dir, name, "model_int8")
            int8_tags = {f"lineage.{k}": v for k, v in lineage.items()} | {
                "lineage.model_hash": model_hash(int8_dir),
                "lineage.source_model_hash": lineage["model_hash"],
                "mmops.variant": "int8",
                "mmops.variant_of": version,
            }
            for key, value in int8_tags.items():
                client.set_model_version_tag(name, int8_version, key, value)
            client.set_model_version_tag(name, version, INT8_VERSION_TAG, int8_version)
    summary = {
        "decision": "registered" if report.accepted else "rejected",
        "accuracy_drop": report.accuracy_drop,
        "max_accuracy_drop": report.max_accuracy_drop,
        "size_ratio": round(report.size_ratio, 4),
        "latency_ratio": round(report.latency_ratio, 4),
        f"latency_batch{report.latency_batch}_ratio": round(report.latency_batch_ratio, 4),
    }
    for key, value in summary.items():
        for target in [version] + ([int8_version] if int8_version else []):
            client.set_model_version_tag(name, target, f"quantize.{key}", str(value))
    return report, int8_version


def _tag_version(client, name: str, version: str, decision: GateDecision, lineage: dict, promoted: bool | None = None,
                 regated: str | None = None) -> None:
    """Lineage and every rule's verdict as version tags; `gate.decision` is the final outcome."""
    tags = {f"lineage.{k}": v for k, v in lineage.items()}
    if promoted is None:
        tags["gate.decision"] = "pending" if decision.promote else "rejected"
    else:
        tags["gate.decision"] = "promoted" if promoted else "rejected"
    tags["gate.champion_compared"] = decision.champion_version or "none"
    tags["gate.test_data_hash"] = decision.test_data_hash or "none"
    if regated is not None:
        tags["gate.regated_against"] = regated
    for r in decision.rules:
        tags[f"gate.{r.rule}"] = f"{'pass' if r.passed else 'fail'} value={r.value} threshold={r.threshold}"
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
