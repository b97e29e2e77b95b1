"""Classification metrics from labels, predictions and probabilities (scikit-learn)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    classification_report,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

ECE_BINS = 15


def classification_metrics(labels, preds) -> dict[str, float]:
    """The two headline numbers (the gate and the registry compare these)."""
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "macro_f1": float(f1_score(labels, preds, average="macro", zero_division=0)),
    }


def per_class_report(labels, preds, classes: list[str]) -> dict:
    return classification_report(
        labels, preds, labels=list(range(len(classes))), target_names=classes, output_dict=True, zero_division=0
    )


def averaged_prf(labels, preds, n_classes: int) -> dict[str, float]:
    """Macro and weighted precision / recall / F1 over all `n_classes` labels."""
    out: dict[str, float] = {}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            labels, preds, labels=list(range(n_classes)), average=average, zero_division=0
        )
        out |= {f"{average}_precision": float(p), f"{average}_recall": float(r), f"{average}_f1": float(f)}
    return out


def present_classes(labels, n_classes: int) -> list[int]:
    """Classes that have both positives and negatives in `labels` (one-vs-rest AUC is defined for them)."""
    labels = np.asarray(labels)
    return [c for c in range(n_classes) if 0 < (labels == c).sum() < len(labels)]


def ovr_auc(labels, probs) -> dict[str, float]:
    """One-vs-rest ROC-AUC and PR-AUC (average precision), macro over the classes present in `labels`.

    A class absent from the test labels has no defined one-vs-rest curve: it is left out of the macro
    average, and `auc_classes_scored` says how many classes were averaged (0 → both AUCs are 0.0).
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = probs.shape[1]
    present = present_classes(labels, n_classes)
    if not present:
        return {"roc_auc_ovr_macro": 0.0, "pr_auc_ovr_macro": 0.0, "auc_classes_scored": 0}
    onehot = np.eye(n_classes)[labels]
    if len(present) == n_classes > 2:  # sklearn's multiclass path wants >2 columns
        roc = roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=list(range(n_classes)))
    else:
        roc = np.mean([roc_auc_score(onehot[:, c], probs[:, c]) for c in present])
    pr = np.mean([average_precision_score(onehot[:, c], probs[:, c]) for c in present])
    return {"roc_auc_ovr_macro": float(roc), "pr_auc_ovr_macro": float(pr), "auc_classes_scored": len(present)}


def reliability_bins(labels, probs, n_bins: int = ECE_BINS) -> list[dict]:
    """Equal-width bins on max-prob confidence: count, mean confidence and accuracy per bin."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bin i holds (edges[i], edges[i+1]]; confidence 0 (impossible for a softmax) goes to bin 0.
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        mask = idx == b
        n = int(mask.sum())
        rows.append(
            {
                "bin_lower": float(edges[b]),
                "bin_upper": float(edges[b + 1]),
                "bin_center": float((edges[b] + edges[b + 1]) / 2),
                "count": n,
                "confidence": float(conf[mask].mean()) if n else 0.0,
                "accuracy": float(correct[mask].mean()) if n else 0.0,
            }
        )
    return rows


def expected_calibration_error(labels, probs, n_bins: int = ECE_BINS) -> float:
    """ECE: sum over bins of (bin share) * |accuracy - mean confidence|, max-prob confidence."""
    rows = reliability_bins(labels, probs, n_bins)
    total = sum(r["count"] for r in rows)
    if total == 0:
        return 0.0
    return float(sum(r["count"] / total * abs(r["accuracy"] - r["confidence"]) for r in rows))


def probability_metrics(labels, probs) -> dict[str, float]:
    """Everything computed from labels + class probabilities (predictions are the argmax)."""
    probs = np.asarray(probs, dtype=np.float64)
    preds = probs.argmax(1)
    return {
        **classification_metrics(labels, preds),
        **averaged_prf(labels, preds, probs.shape[1]),
        **ovr_auc(labels, probs),
        "ece": expected_calibration_error(labels, probs),
    }
