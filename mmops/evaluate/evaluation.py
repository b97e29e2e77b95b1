"""Stage `evaluate`: the trained model on the frozen test split, whole and modality by modality."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from mmops.atomic import atomic_write_json, atomic_write_text, remove_stale_temps
from mmops.catalog import METRICS_JSON, PER_CLASS_JSON, SHIFT_MD, split_file
from mmops.data.manifest import SHIFTED
from mmops.evaluate.metrics import (
    classification_metrics,
    per_class_report,
    probability_metrics,
)
from mmops.evaluate.plots import write_plots
from mmops.models.batch import index
from mmops.inference.model_dir import load_model_dir
from mmops.inference.predict import predict_logits
from mmops.models.classifier import with_frozen_embeddings

LATENCY_SINGLE_SAMPLES = 50
LATENCY_BATCH_REPEATS = 3


def _ms_stats(per_sample_ms: list[float]) -> dict[str, float]:
    arr = np.asarray(per_sample_ms, dtype=np.float64)
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)), "n_timed": int(arr.size)}


def measure_latency(model, test: dict, device, batch_size: int, max_single: int = LATENCY_SINGLE_SAMPLES) -> dict:
    """Per-sample forward latency (ms) through `predict_logits`, at batch 1 and at `batch_size`.

    Machine-dependent: measured on whatever ran the stage, on `device`, after one warm-up call.
    """
    n = len(test["labels"])
    predict_logits(model, index(test, torch.arange(min(n, batch_size))), device, batch_size)  # warm-up
    single = []
    for i in range(min(n, max_single)):
        sample = index(test, torch.arange(i, i + 1))
        start = time.perf_counter()
        predict_logits(model, sample, device, 1)
        single.append((time.perf_counter() - start) * 1000)
    batched = []
    for _ in range(LATENCY_BATCH_REPEATS):
        for lo in range(0, n, batch_size):
            chunk = index(test, torch.arange(lo, min(lo + batch_size, n)))
            start = time.perf_counter()
            predict_logits(model, chunk, device, batch_size)
            batched.append((time.perf_counter() - start) * 1000 / len(chunk["labels"]))
    return {
        "torch_threads": torch.get_num_threads(),  # numbers only: metrics.json is logged to MLflow as-is
        "batch_1": _ms_stats(single),
        f"batch_{batch_size}": _ms_stats(batched),
    }


def shift_report(metrics: dict) -> str:
    """In-domain vs shifted test scores as a Markdown table (empty without a shifted split)."""
    if "shifted" not in metrics:
        return ""
    rows = ["| metric | in-domain test | shifted test | gap |", "| --- | --- | --- | --- |"]
    for key in ("accuracy", "macro_f1", "roc_auc_ovr", "ece"):
        if key in metrics and key in metrics["shifted"]:
            a, b = metrics[key], metrics["shifted"][key]
            rows.append(f"| {key} | {a:.3f} | {b:.3f} | {a - b:+.3f} |")
    return f"In-domain test ({metrics['n_test']} samples) vs `test_shifted` ({metrics['shifted']['n']}):\n\n" + "\n".join(rows) + "\n"


def evaluate(model_dir: Path, features_dir: Path, out_dir: Path, batch_size: int = 128) -> dict:
    """Write `metrics.json`, `per_class.json`, the evaluation PNGs and DVC plot data files to `out_dir`.

    With a `test_shifted.pt` split, `metrics["shifted"]` holds its scores and `shift.md` compares them.
    """
    loaded = load_model_dir(model_dir)
    test = with_frozen_embeddings(loaded.model, torch.load(split_file(features_dir, "test"), weights_only=True))
    labels = test["labels"].numpy()
    device = torch.device("cpu")
    probs = torch.softmax(predict_logits(loaded.model, test, device, batch_size), dim=1).numpy()
    preds = probs.argmax(1)

    metrics: dict = {**probability_metrics(labels, probs), "n_test": int(len(labels))}
    for modality in loaded.model.modalities:
        if len(loaded.model.modalities) > 1:
            dropped = predict_logits(loaded.model, test, device, batch_size, drop=frozenset({modality})).argmax(1)
            metrics[f"without_{modality}"] = classification_metrics(labels, dropped.numpy())
    shifted_path = split_file(features_dir, SHIFTED)
    if shifted_path.exists():
        shifted = with_frozen_embeddings(loaded.model, torch.load(shifted_path, weights_only=True))
        shifted_probs = torch.softmax(predict_logits(loaded.model, shifted, device, batch_size), dim=1).numpy()
        metrics["shifted"] = {**probability_metrics(shifted["labels"].numpy(), shifted_probs), "n": len(shifted["labels"])}
        metrics["shift_gap"] = {k: metrics[k] - metrics["shifted"][k] for k in ("accuracy", "macro_f1")}
    metrics["latency"] = measure_latency(loaded.model, test, device, batch_size)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)  # half-written files of a killed earlier run
    atomic_write_text(out_dir / SHIFT_MD, shift_report(metrics) or "No `test_shifted` split in this dataset.\n")
    atomic_write_json(out_dir / PER_CLASS_JSON, per_class_report(labels, preds, loaded.classes))
    write_plots(labels, probs, loaded.classes, metrics, out_dir)
    atomic_write_json(out_dir / METRICS_JSON, metrics)  # last: its presence says the stage finished
    return metrics
