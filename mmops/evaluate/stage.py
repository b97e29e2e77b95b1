"""Stage `evaluate`: the trained model on the frozen test split, whole and modality by modality."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mmops.evaluate.metrics import classification_metrics, per_class_report, plot_confusion_matrix
from mmops.models.classifier import with_frozen_embeddings
from mmops.train.checkpoint import load_model_dir
from mmops.train.recipe import predict_logits


def evaluate(model_dir: Path, features_dir: Path, out_dir: Path, batch_size: int = 128) -> dict:
    """Write `metrics.json`, `per_class.json` and `confusion_matrix.png` to `out_dir`."""
    loaded = load_model_dir(model_dir)
    test = with_frozen_embeddings(loaded.model, torch.load(Path(features_dir) / "test.pt", weights_only=True))
    labels = test["labels"]
    device = torch.device("cpu")
    preds = predict_logits(loaded.model, test, device, batch_size).argmax(1)

    metrics: dict = {**classification_metrics(labels, preds), "n_test": int(len(labels))}
    for modality in loaded.model.modalities:
        if len(loaded.model.modalities) > 1:
            dropped = predict_logits(loaded.model, test, device, batch_size, drop=frozenset({modality})).argmax(1)
            metrics[f"without_{modality}"] = classification_metrics(labels, dropped)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    report = per_class_report(labels, preds, loaded.classes)
    (out_dir / "per_class.json").write_text(json.dumps(report, indent=2))
    plot_confusion_matrix(labels, preds, loaded.classes, out_dir / "confusion_matrix.png")
    return metrics
