"""Stage `register`: log the run, register the pyfunc as `challenger`, gate, quantise, export to ONNX, maybe promote.

`register` reads as its list of steps; each step is a function below it, in the order it runs.
Promotion is compare-and-set (mmops/registry/promotion.py): the champion is re-read under a lock
right before `champion` moves; if another run moved it since the gate compared, the gate runs
again against the new champion, still under the lock, and only a pass moves the alias.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient

import mmops
from mmops.atomic import atomic_write_json, atomic_write_text
from mmops.catalog import GATE_MD, HISTORY_JSON, Catalog
from mmops.compress.onnx_export import OnnxReport, export_and_compare
from mmops.compress.distill import distill_and_compare
from mmops.compress.prune import prune_and_compare
from mmops.compress.quantize import QuantizeReport, quantize_and_compare
from mmops.compress.variant import VariantReport
from mmops.config import Params
from mmops.data.hashing import dataset_hash, tree_sha256
from mmops.errors import UserError
from mmops.evaluate.latency import latency_note
from mmops.flatten import flatten
from mmops.inference.pyfunc import MODEL_DIR_ARTIFACT, PYFUNC_CODE, folder_facts, input_example, pyfunc_signature
from mmops.inference.verify import MODEL_FILES_TAG, MODEL_HASH_TAG, SIGNATURE_TAG, load_registered, model_record
from mmops.monitor.reference import save_reference
from mmops.registry.card import facts_tags, write_cards
from mmops.registry.gate import (
    GateDecision,
    applicable,
    check_metric_keys,
    cv_rules,
    decide,
    numeric,
    read_cv_report,
    render_markdown,
    same_test_data_rule,
    training_identity,
)
from mmops.registry.lineage import (
    dvc_data_md5,
    frozen_test_hash,
    git_commit,
    params_hash,
    pip_requirements,
    split_rows,
)
from mmops.registry.promotion import (
    CHALLENGER,
    CHAMPION,
    DISTILLED_VERSION_TAG,
    INT8_VERSION_TAG,
    ONNX_VERSION_TAG,
    PRUNED_VERSION_TAG,
    VARIANT_OF_TAG,
    VARIANT_TAG,
    MoveResult,
    compare_and_set,
    current_version,
    decision_rules,
    read_pin,
    release_hint,
)
from mmops.registry.scoring import frozen_test_rows, score_model
from mmops.registry.tracking import setup_mlflow

__all__ = ["CHALLENGER", "CHAMPION", "RegistrationRefused", "register"]

REGISTRATION_KEY_TAG = "mmops.registration_key"
Gate = Callable[[str | None], GateDecision]  # champion version (or None) -> decision


class RegistrationRefused(UserError, RuntimeError):
    """Raised when the inputs of a registration are not trustworthy (e.g. failed validation)."""


def register(params: Params, paths: Catalog) -> dict:
    """Log and register the model, then promote it to `champion` if the gate passes (and no pin holds).

    A model whose content (`lineage.model_hash`) an existing version already holds is not registered
    again: that version is reused, in its own MLflow run (no new run, version or int8 variant), and
    only gated again against the current champion.
    Writes `paths.registry_json` (version, decision, rules, quantised variant, pin) and `paths.gate_md`.
    """
    validation, metrics, history = check_inputs(params, paths)
    frame = frozen_test_rows(paths.data, paths.splits_csv)
    lineage = collect_lineage(params, paths, validation, frame)
    setup_mlflow(params.registry.experiment)
    client, name = MlflowClient(), params.registry.model_name
    existing = registered_version(client, name, paths.model)
    with mlflow.start_run(run_id=existing.run_id if existing is not None else None) as run:
        if existing is None:
            lineage["run_id"] = run.info.run_id
            log_run(params, paths, lineage, metrics, history)
            version = register_challenger(client, name, paths.model, lineage)
        else:  # the version's recorded lineage stays; this run only gates it again
            version = str(existing.version)
            recorded = {k.removeprefix("lineage."): v for k, v in existing.tags.items() if k.startswith("lineage.")}
            test_hash, lineage = lineage["test_data_hash"], lineage | recorded | {"run_id": run.info.run_id}
            lineage["test_data_hash"] = test_hash  # the rows the gate scores now
        save_reference(client, name, version, run.info.run_id, paths, params.monitor.drift, params.seed)  # `mmops monitor`
        gate = build_gate(params, paths, metrics, frame, lineage["test_data_hash"], name, version)
        champion = current_version(client, name, CHAMPION)
        decision = gate(champion)
        if existing is None:
            quant, int8_version = register_int8_variant(params, paths, client, name, version, lineage)
            onnx, onnx_version = register_onnx_variant(params, paths, client, name, version, lineage)
            distilled, distilled_version = register_distilled_variant(params, paths, client, name, version, lineage)
            pruned, pruned_version = register_pruned_variant(params, paths, client, name, version, lineage)
            extra = "\n".join(r.markdown(v) for r, v in ((quant, int8_version), (onnx, onnx_version),
                                                         (distilled, distilled_version), (pruned, pruned_version)) if r)
        else:
            quant, int8_version = None, existing.tags.get(INT8_VERSION_TAG)
            onnx, onnx_version = None, existing.tags.get(ONNX_VERSION_TAG)
            distilled, distilled_version = None, existing.tags.get(DISTILLED_VERSION_TAG)
            pruned, pruned_version = None, existing.tags.get(PRUNED_VERSION_TAG)
            extra = (f"Reused v{version}: it holds the same model content (`{MODEL_HASH_TAG}`); "
                     "no new version was registered, the gate ran again against the current champion.")
        tag_version(client, name, version, decision, lineage if existing is None else {})  # before the move
        moved = promote(client, name, version, champion, decision, gate, run.info.run_id)
        tag_version(client, name, version, moved.decision, {}, moved)
        write_cards(client, name, [version, int8_version, onnx_version, distilled_version, pruned_version] if existing is None else [version],
                    current_version(client, name, CHAMPION))
        report = render_markdown(moved.decision, name, version, extra="\n".join(p for p in (latency_note(metrics), extra) if p))
        mlflow.log_text(report, f"gate/{GATE_MD}")
    pin = read_pin(client, name)
    result = {
        "model_name": name, "version": version, "run_id": run.info.run_id, "promoted": moved.moved,
        "reused": existing is not None, "held": moved.held_by is not None,
        "pin": pin.model_dump() if pin else None,
        "champion_version": current_version(client, name, CHAMPION),
        "previous_champion": moved.decision.champion_version, "regated_against": moved.regated_against,
        "decision": moved.decision.model_dump(), "lineage": lineage,
        "quantized": (quant.model_dump() | {"version": int8_version}) if quant
        else recorded_quantization(client.get_model_version(name, version).tags) if existing is not None else None,
        "onnx": (onnx.model_dump() | {"version": onnx_version}) if onnx
        else recorded_onnx(client.get_model_version(name, version).tags) if existing is not None else None,
        "distilled": (distilled.model_dump() | {"version": distilled_version}) if distilled
        else recorded_variant(client.get_model_version(name, version).tags, "distill", DISTILLED_VERSION_TAG)
        if existing is not None else None,
        "pruned": (pruned.model_dump() | {"version": pruned_version}) if pruned
        else recorded_variant(client.get_model_version(name, version).tags, "prune", PRUNED_VERSION_TAG)
        if existing is not None else None,
        "tracking_uri": mlflow.get_tracking_uri(),
    }
    write_report(paths, result, report)
    return result


def registered_version(client: MlflowClient, name: str, model_dir: Path):
    """The earliest fp32 version that already holds this model's content (`lineage.model_hash`), or None.

    Variants (`mmops.variant`) never match: they hold other content. Neither does a version without a
    run (not registered by mmops), nor one still `pending` (an interrupted registration: the normal
    path finishes it, finding it by `mmops.registration_key`)."""
    from mlflow.exceptions import MlflowException

    content = model_record(model_dir)[MODEL_HASH_TAG]
    try:
        found = client.search_model_versions(f"name='{name}' and tags.`{MODEL_HASH_TAG}` = '{content}'")
    except MlflowException:
        return None  # no such registered model yet
    candidates = [v for v in found
                  if not v.tags.get(VARIANT_TAG) and v.run_id and v.tags.get("gate.decision") != "pending"]
    return min(candidates, key=lambda v: int(v.version)) if candidates else None


def _recorded(tags: dict[str, str], prefix: str, version_tag: str, numbers: tuple[str, ...]) -> dict | None:
    """A variant comparison as a version's `<prefix>.*` tags recorded (a reused version: not run again)."""
    if f"{prefix}.decision" not in tags:
        return None

    def number(key: str) -> float | None:
        try:
            return float(tags[f"{prefix}.{key}"])
        except (KeyError, ValueError):
            return None

    return {"accepted": tags[f"{prefix}.decision"] == "registered", "version": tags.get(version_tag),
            **{key: number(key) for key in numbers}, "reused": True}


RATIOS = ("accuracy_drop", "max_accuracy_drop", "size_ratio", "latency_ratio")


def recorded_quantization(tags: dict[str, str]) -> dict | None:
    """The int8 comparison a version's `quantize.*` tags recorded."""
    return _recorded(tags, "quantize", INT8_VERSION_TAG, RATIOS)


def recorded_variant(tags: dict[str, str], section: str, version_tag: str) -> dict | None:
    """A distillation's or pruning's comparison as a version's `<section>.*` tags recorded."""
    return _recorded(tags, section, version_tag, (*RATIOS, "gzip_ratio"))


def recorded_onnx(tags: dict[str, str]) -> dict | None:
    """The ONNX comparison a version's `onnx.*` tags recorded."""
    return _recorded(tags, "onnx", ONNX_VERSION_TAG, ("max_abs_diff_probs", "max_abs_diff", "size_ratio", "latency_ratio"))


def check_inputs(params: Params, paths: Catalog) -> tuple[dict, dict, dict]:
    """(validation report, metrics, training history); refuse before anything is logged if they are unusable."""
    validation = json.loads(paths.validation_json.read_text())
    if not validation.get("passed"):
        raise RegistrationRefused(f"data validation failed ({paths.validation_json}); nothing is registered")
    metrics = json.loads(paths.metrics_json.read_text())
    check_metric_keys(applicable(params.gate, params.model.active()), metrics)  # a typo in gate: fails before anything is registered
    return validation, metrics, json.loads((paths.model / HISTORY_JSON).read_text())


def collect_lineage(params: Params, paths: Catalog, validation: dict, frame: pd.DataFrame) -> dict[str, str]:
    """Where the model comes from: git commit, data, params, model and frozen test rows (hashes)."""
    commit, dirty = git_commit()
    return {
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        "data_hash": str(validation.get("data_hash")),
        "params_hash": params_hash(params.dump()),
        "dvc_data_md5": dvc_data_md5(paths.data) or "not tracked by dvc",
        "model_hash": tree_sha256(paths.model),  # recorded again, with per-file digests, on the version
        "test_data_hash": frozen_test_hash(frame),
        "split_rows": split_rows(paths.splits_csv),
        "validation_report": str(paths.validation_json),
    }


def log_run(params: Params, paths: Catalog, lineage: dict, metrics: dict, history: dict) -> None:
    """Lineage tags, params, the per-epoch history, the test metrics, the evaluation and validation reports."""
    mlflow.set_tags({k: v for k, v in lineage.items() if k != "run_id"})
    logged = params.dump()
    logged["train"].update(history["summary"].get("train", {}))  # the batch size and epochs `auto` chose
    mlflow.log_params({k: str(v)[:6000] for k, v in flatten(logged).items()})
    for row in history["epochs"]:
        mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
    mlflow.log_metrics({f"test_{k}": v for k, v in numeric(metrics).items()})
    mlflow.log_artifacts(str(paths.metrics), "evaluation")
    for report in (paths.validation_json, paths.validation_md):
        if report.exists():
            mlflow.log_artifact(str(report), "validation")


def register_challenger(client: MlflowClient, name: str, model_dir: Path, lineage: dict) -> str:
    """Register the model folder as a new version (or find the one an earlier attempt registered)
    and point `challenger` at it; returns the version."""
    version = log_pyfunc(client, model_dir, name, "model", {f"lineage.{k}": v for k, v in lineage.items()})
    client.set_registered_model_alias(name, CHALLENGER, version)
    return version


def registration_key(tags: dict[str, str]) -> str:
    """What makes two registrations the same: the model's content and the run's data and params."""
    parts = [tags.get(f"lineage.{k}", "") for k in ("data_hash", "params_hash", "test_data_hash")]
    return hashlib.sha256("\0".join([tags[MODEL_HASH_TAG], *parts]).encode()).hexdigest()[:32]


def log_pyfunc(client: MlflowClient, model_dir: Path, name: str, artifact_name: str, tags: dict[str, str]) -> str:
    """Log `model_dir` as the raw-input pyfunc (models-from-code) and register it; returns the version.

    The version is created with its lineage, content digests and `gate.decision=pending` in one
    call, so no moment exists where it could be promoted without a gate decision. A retry of the
    same registration (same model, data and params) returns the version the first attempt made.
    """
    tags = tags | model_record(model_dir)
    tags[REGISTRATION_KEY_TAG] = registration_key(tags)
    earlier = client.search_model_versions(f"name='{name}' and tags.`{REGISTRATION_KEY_TAG}` = '{tags[REGISTRATION_KEY_TAG]}'")
    if earlier:
        return str(min(int(v.version) for v in earlier))
    from mmops.inference.model_dir import read_base_weights
    from mmops.models.pretrained import find_base_weights
    from mmops.registry.tracking import quiet_log_model, store_blob

    for modality, entry in read_base_weights(model_dir).items():  # frozen weights: once per content hash
        store_blob(client, find_base_weights(entry["sha256"], entry.get("source"), f"{model_dir} [{modality}]"),
                   entry["sha256"], entry["file"])
    classes, modalities = folder_facts(model_dir)
    with quiet_log_model():
        info = mlflow.pyfunc.log_model(
            name=artifact_name,
            python_model=str(PYFUNC_CODE),
            artifacts={MODEL_DIR_ARTIFACT: str(model_dir)},
            code_paths=[str(Path(mmops.__file__).parent)],
            pip_requirements=pip_requirements(),
            model_config={k: tags[k] for k in (MODEL_HASH_TAG, MODEL_FILES_TAG, SIGNATURE_TAG) if k in tags},
            signature=pyfunc_signature(classes, modalities),
            input_example=input_example(modalities),  # MLflow runs the model on it once, here
        )
    created = mlflow.register_model(info.model_uri, name,
                                    tags=tags | facts_tags(classes, modalities) | {"gate.decision": "pending"})
    return str(created.version)


def build_gate(params: Params, paths: Catalog, metrics: dict, frame: pd.DataFrame, test_hash: str, name: str,
               version: str) -> Gate:
    """The gate against any champion; challenger and champion are re-scored on the same frozen rows."""
    meta = paths.features_meta
    evaluated_on = json.loads(meta.read_text()).get("data_hash") if meta.exists() else None
    same_data = same_test_data_rule(evaluated_on, dataset_hash(paths.data))
    rules = applicable(params.gate, params.model.active())
    keys = list(rules.regression)
    cv = cv_rules(rules.cv, read_cv_report(paths.metrics), training_identity(params, paths.features)) if rules.cv else []
    challenger_scores: dict = {}

    def scores(v: str) -> dict:
        with tempfile.TemporaryDirectory(prefix=f"mmops-gate-v{v}-") as tmp:
            return score_model(load_registered(name, v, Path(tmp)), frame, keys)

    def gate(champion: str | None) -> GateDecision:
        champion_scores = None
        if champion is not None and keys:
            if not challenger_scores:
                challenger_scores.update(scores(version))
            champion_scores = scores(champion)
            mlflow.log_metrics({f"champion_v{champion}_{k}": v for k, v in numeric(champion_scores).items()})
        elif champion is not None:
            champion_scores = {}
        return decide(
            metrics, champion_scores, True, rules, champion, challenger_scores=challenger_scores or None,
            same_data=same_data, test_data_hash=test_hash, cv=cv,
        )

    return gate


def register_variant(client: MlflowClient, name: str, version: str, lineage: dict, variant: str, section: str,
                     make: Callable[[Path], Any], summarize: Callable[[Any], dict]) -> tuple[Any, str | None]:
    """Build a variant of fp32 `version` with `make(folder)` (it returns the comparison: `accepted`,
    `markdown()`), log the comparison to the run (`<variant>_*` metrics, `gate/<section>.md`) and,
    when accepted, register the folder as its own version (`mmops.variant=<variant>`,
    `mmops.variant_of=<version>`) named by the fp32 version's `<section>.<variant>_version` tag. Both
    versions get `<section>.decision` and `summarize(report)` as `<section>.*` tags.
    Returns (the comparison, the variant's version or None)."""
    with tempfile.TemporaryDirectory(prefix=f"mmops-{variant}-") as tmp:
        out_dir = Path(tmp) / f"model_{variant}"
        report = make(out_dir)
        mlflow.log_metrics({f"{variant}_{k}": float(v) for k, v in report.model_dump().items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)})
        mlflow.log_text(report.markdown(), f"gate/{section}.md")
        variant_version = None
        if report.accepted:
            tags = {f"lineage.{k}": v for k, v in lineage.items() if k != "model_hash"} | {
                "lineage.source_model_hash": lineage["model_hash"],
                VARIANT_TAG: variant,
                VARIANT_OF_TAG: version,
            }
            variant_version = log_pyfunc(client, out_dir, name, f"model_{variant}", tags)
            client.set_model_version_tag(name, version, f"{section}.{variant}_version", variant_version)
    summary = {"decision": "registered" if report.accepted else "rejected"} | summarize(report)
    for key, value in summary.items():
        for target in [version] + ([variant_version] if variant_version else []):
            client.set_model_version_tag(name, target, f"{section}.{key}", str(value))
    return report, variant_version


def ratios(report: QuantizeReport | VariantReport) -> dict:
    """The figures a compressed variant's tags record: accuracy drop and its limit, size and latency ratios."""
    return {
        "accuracy_drop": report.accuracy_drop,
        "max_accuracy_drop": report.max_accuracy_drop,
        "size_ratio": round(report.size_ratio, 4),
        "latency_ratio": round(report.latency_ratio, 4),
        f"latency_batch{report.latency_batch}_ratio": round(report.latency_batch_ratio, 4),
    }


def compressed_ratios(report: VariantReport) -> dict:
    """`ratios`, and the gzipped checkpoint's (where pruning's zeros show)."""
    return ratios(report) | {"gzip_ratio": round(report.gzip_ratio, 4)}


def register_int8_variant(params: Params, paths: Catalog, client: MlflowClient, name: str, version: str,
                          lineage: dict) -> tuple[QuantizeReport | None, str | None]:
    """Compare a dynamic int8 variant with the fp32 model; register it when the accuracy drop is within limits.

    Returns (the comparison, the int8 version); (None, None) when quantisation is off.
    """
    if not params.quantize.enabled:
        return None, None
    return register_variant(client, name, version, lineage, "int8", "quantize",
                            lambda out: quantize_and_compare(paths.model, paths.features, params.quantize, out), ratios)


def register_onnx_variant(params: Params, paths: Catalog, client: MlflowClient, name: str, version: str,
                          lineage: dict) -> tuple[OnnxReport | None, str | None]:
    """Export the whole model to ONNX, compare it with PyTorch on the test split; register it as a
    variant (`mmops.variant=onnx`, found through the fp32 version's `onnx.onnx_version`) when every
    probability is within `onnx.max_abs_diff`. Returns (the comparison, the ONNX version); (None,
    None) when `onnx.enabled` is off."""
    if not params.onnx.enabled:
        return None, None

    def summarize(report: OnnxReport) -> dict:
        if not report.exported:
            return {"max_abs_diff": report.max_abs_diff, "error": (report.error or "")[:4000]}
        return {"max_abs_diff": report.max_abs_diff,
                "max_abs_diff_probs": f"{report.max_abs_diff_probs:.3g}",
                "max_abs_diff_logits": f"{report.max_abs_diff_logits:.3g}",
                "size_ratio": round(report.size_ratio, 4), "latency_ratio": round(report.latency_ratio, 4),
                f"latency_batch{report.latency_batch}_ratio": round(report.latency_batch_ratio, 4)}

    return register_variant(client, name, version, lineage, "onnx", "onnx",
                            lambda out: export_and_compare(paths.model, paths.features, params.onnx, out), summarize)


def register_distilled_variant(params: Params, paths: Catalog, client: MlflowClient, name: str, version: str,
                               lineage: dict) -> tuple[VariantReport | None, str | None]:
    """Train a smaller student on the fp32 model's soft labels (mmops/compress/distill.py); register it
    (`champion_distilled` follows the champion to it) when the accuracy drop is within
    `distill.max_accuracy_drop`. (None, None) when `distill.enabled` is off."""
    if not params.distill.enabled:
        return None, None
    return register_variant(client, name, version, lineage, "distilled", "distill", lambda out: distill_and_compare(
        paths.model, paths.features, paths.cache, params.distill, out), compressed_ratios)


def register_pruned_variant(params: Params, paths: Catalog, client: MlflowClient, name: str, version: str,
                            lineage: dict) -> tuple[VariantReport | None, str | None]:
    """Prune and fine-tune a copy of the fp32 model (mmops/compress/prune.py); register it
    (`champion_pruned` follows the champion to it) when the accuracy drop is within
    `prune.max_accuracy_drop`. (None, None) when `prune.enabled` is off."""
    if not params.prune.enabled:
        return None, None
    return register_variant(client, name, version, lineage, "pruned", "prune", lambda out: prune_and_compare(
        paths.model, paths.features, paths.cache, params.prune, out), compressed_ratios)


def tag_version(client: MlflowClient, name: str, version: str, decision: GateDecision, lineage: dict,
                moved: MoveResult | None = None) -> None:
    """Lineage and every rule's verdict as version tags. `gate.decision` is `pending` from the
    version's creation until the move is known (`promoted`), or `rejected` as soon as the gate fails,
    or `held` when it passed but a pin (a human decision) kept `champion` where it was."""
    tags = {f"lineage.{k}": v for k, v in lineage.items()}
    if moved is None:
        tags["gate.decision"] = "pending" if decision.promote else "rejected"
    else:
        is_champion = moved.moved or moved.from_version == version  # a retried registration of the champion
        held = moved.held_by is not None and decision.promote
        tags["gate.decision"] = "promoted" if is_champion else "held" if held else "rejected"
        if held:
            tags["gate.held_by_pin"] = moved.held_by.describe()[:4000]
        if moved.regated_against is not None:
            tags["gate.regated_against"] = moved.regated_against
    tags["gate.champion_compared"] = decision.champion_version or "none"
    tags["gate.test_data_hash"] = decision.test_data_hash or "none"
    for r in decision.rules:
        tags[f"gate.{r.rule}"] = f"{'pass' if r.passed else 'fail'} value={r.value} threshold={r.threshold}"
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def promote(client: MlflowClient, name: str, version: str, champion: str | None, decision: GateDecision, gate: Gate,
            run_id: str) -> MoveResult:
    """Compare-and-set `champion` to the challenger when the gate passed; `decision` of the result is the final one.

    A pin (checked under the lock) suspends the move: the result is not moved, with `held_by` set."""
    if not decision.promote:
        return MoveResult(False, champion, version, decision=decision)
    moved = compare_and_set(
        client, name, version, champion, action="auto-promote", regate=gate,
        reason=f"gate passed in run {run_id}", rules=decision_rules(decision),
    )
    if moved.held_by is not None:
        import logging

        logging.getLogger(__name__).warning("%s v%s: would promote, but %s", name, version, release_hint(moved.held_by))
    return moved if moved.decision is not None else replace(moved, decision=decision)


def write_report(paths: Catalog, result: dict, gate_md: str) -> None:
    """The registration (`registry.json`) and the gate's decision (`gate.md`) beside the other reports."""
    paths.reports.mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths.gate_md, gate_md)
    atomic_write_json(paths.registry_json, result)
