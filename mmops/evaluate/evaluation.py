"""Stage `evaluate`: the trained model on the frozen test split, whole and modality by modality."""

from __future__ import annotations

from pathlib import Path

import torch

from mmops.atomic import atomic_write_json, atomic_write_text, remove_stale_temps
from mmops.catalog import METRICS_JSON, PER_CLASS_JSON, SHIFT_MD, SPLITS_CSV, split_file
from mmops.data.manifest import SHIFTED
from mmops.evaluate.metrics import (
    classification_metrics,
    per_class_report,
    probability_metrics,
)
from mmops.evaluate.latency import (
    SINGLE_REQUESTS,
    frozen_test_rows,
    model_only_latency,
    request_rows,
    served_latency,
)
from mmops.evaluate.plots import write_plots
from mmops.inference.model_dir import load_model_dir
from mmops.features.shards import SplitView
from mmops.inference.predict import SERVE_MAX_BATCH_SIZE, serve_torch_threads, split_logits
from mmops.models.classifier import with_frozen_embeddings

def shift_report(metrics: dict) -> str:
    """In-domain vs shifted test scores as a Markdown table (empty without a shifted split)."""
    if "shifted" not in metrics:
        return ""
    rows = ["| metric | in-domain test | shifted test | gap |", "| --- | --- | --- | --- |"]
    for key in ("accuracy", "macro_f1", "roc_auc_ovr_macro", "ece"):
        if key in metrics and key in metrics["shifted"]:
            a, b = metrics[key], metrics["shifted"][key]
            rows.append(f"| {key} | {a:.3f} | {b:.3f} | {a - b:+.3f} |")
    return f"In-domain test ({metrics['n_test']} samples) vs `test_shifted` ({metrics['shifted']['n']}):\n\n" + "\n".join(rows) + "\n"


def evaluate(
    model_dir: Path, features_dir: Path, out_dir: Path, batch_size: int = 128, *,
    data_dir: Path | None = None, serve_batch_size: int = SERVE_MAX_BATCH_SIZE,
) -> dict:
    """Write `metrics.json`, `per_class.json`, the evaluation PNGs and DVC plot data files to `out_dir`.

    With a `test_shifted` split, `metrics["shifted"]` holds its scores and `shift.md` compares them.
    `metrics["latency"]` times the served path on raw test rows of `data_dir` (the dataset the
    features were built from; `mmops.evaluate.latency`), at batch 1 and `serve_batch_size`. Without
    `data_dir` only `latency.model_only` is measured, and a gate rule on `latency.batch_1.*` fails
    as an unknown key rather than pass on a number that leaves out preprocessing and the encoders.
    """
    loaded = load_model_dir(model_dir)
    device = torch.device("cpu")
    test = SplitView(split_file(features_dir, "test"))
    labels = test.column("labels").numpy()
    modalities = loaded.model.modalities
    drops = (frozenset(), *(frozenset({m}) for m in modalities if len(modalities) > 1))
    logits = split_logits(loaded.model, test, device, batch_size, drops)
    probs = torch.softmax(logits[frozenset()], dim=1).numpy()
    preds = probs.argmax(1)

    metrics: dict = {**probability_metrics(labels, probs), "n_test": int(len(labels))}
    for drop in drops[1:]:
        (modality,) = drop
        metrics[f"without_{modality}"] = classification_metrics(labels, logits[drop].argmax(1).numpy())
    shifted_path = split_file(features_dir, SHIFTED)
    if shifted_path.exists():
        shifted = SplitView(shifted_path)
        shifted_probs = torch.softmax(split_logits(loaded.model, shifted, device, batch_size)[frozenset()], dim=1).numpy()
        metrics["shifted"] = {**probability_metrics(shifted.column("labels").numpy(), shifted_probs), "n": len(shifted)}
        metrics["shift_gap"] = {k: metrics[k] - metrics["shifted"][k] for k in ("accuracy", "macro_f1")}
    threads = serve_torch_threads()
    latency: dict = {}
    if data_dir is not None:
        frame = frozen_test_rows(Path(data_dir), Path(features_dir) / SPLITS_CSV)
        rows = request_rows(frame, max(SINGLE_REQUESTS, serve_batch_size))  # bounded: files read once, here
        latency = served_latency(loaded, rows, serve_batch_size, threads)
    # model-only timing on the first shard's rows (frozen embeddings precomputed, as training sees them)
    latency["model_only"] = model_only_latency(loaded.model, with_frozen_embeddings(loaded.model, test.shard(0)), device, serve_batch_size, threads)
    metrics["latency"] = latency

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)  # half-written files of a killed earlier run
    atomic_write_text(out_dir / SHIFT_MD, shift_report(metrics) or "No `test_shifted` split in this dataset.\n")
    atomic_write_json(out_dir / PER_CLASS_JSON, per_class_report(labels, preds, loaded.classes))
    write_plots(labels, probs, loaded.classes, metrics, out_dir)
    atomic_write_json(out_dir / METRICS_JSON, metrics)  # last: its presence says the stage finished
    return metrics
