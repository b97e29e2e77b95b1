"""Evaluation figures (PNG, matplotlib Agg) and the small data files DVC renders as plots."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve  # noqa: E402

from mmops.atomic import atomic_path, atomic_write_json  # noqa: E402
from mmops.evaluate.metrics import present_classes, reliability_bins  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_confusion_matrix(labels, preds, classes: list[str], path: Path, title: str = "Confusion matrix") -> Path:
    cm = confusion_matrix(labels, preds, labels=list(range(len(classes))))
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(cm, cmap="Blues")
    ax.set(xticks=np.arange(len(classes)), yticks=np.arange(len(classes)), xticklabels=classes, yticklabels=classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black", fontsize=8)
    fig.colorbar(im, ax=ax)
    return _save(fig, path)


def curve_rows(labels, probs, classes: list[str], kind: str) -> list[dict]:
    """One-vs-rest curve points per class present in `labels`: `roc` (fpr, tpr) or `pr` (recall, precision)."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    rows: list[dict] = []
    for c in present_classes(labels, len(classes)):
        truth = (labels == c).astype(int)
        if kind == "roc":
            x, y, _ = roc_curve(truth, probs[:, c])
            rows += [{"class": classes[c], "fpr": round(float(a), 4), "tpr": round(float(b), 4)} for a, b in zip(x, y)]
        else:
            prec, rec, _ = precision_recall_curve(truth, probs[:, c])
            rows += [{"class": classes[c], "recall": round(float(a), 4), "precision": round(float(b), 4)} for a, b in zip(rec, prec)]
    return rows


def _plot_curves(rows: list[dict], x: str, y: str, title: str, path: Path, diagonal: bool) -> Path:
    fig, ax = plt.subplots(figsize=(6, 5))
    for name in dict.fromkeys(r["class"] for r in rows):
        pts = [r for r in rows if r["class"] == name]
        ax.plot([p[x] for p in pts], [p[y] for p in pts], label=name, linewidth=1)
    if diagonal:
        ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    ax.set(xlabel=x, ylabel=y, title=title, xlim=(0, 1), ylim=(0, 1.02))
    if rows:
        ax.legend(fontsize=7, loc="lower right" if diagonal else "lower left", ncol=2)
    return _save(fig, path)


def plot_reliability(bins: list[dict], path: Path, ece: float | None = None) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    width = bins[0]["bin_upper"] - bins[0]["bin_lower"] if bins else 0.1
    filled = [b for b in bins if b["count"]]
    ax.bar([b["bin_center"] for b in filled], [b["accuracy"] for b in filled], width=width, edgecolor="k", alpha=0.7,
           label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="perfect calibration")
    title = "Reliability diagram" + (f" (ECE {ece:.3f})" if ece is not None else "")
    ax.set(xlabel="confidence (max prob)", ylabel="accuracy", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def plot_modality_bars(metrics: dict, path: Path) -> Path:
    """Macro-F1 of the full model next to the model with each modality removed."""
    names = ["full"] + [k.removeprefix("without_") for k in metrics if k.startswith("without_")]
    values = [metrics["macro_f1"]] + [metrics[f"without_{n}"]["macro_f1"] for n in names[1:]]
    fig, ax = plt.subplots(figsize=(6, 4))
    bars = ax.bar([n if n == "full" else f"without {n}" for n in names], values,
                  color=["tab:blue"] + ["tab:orange"] * (len(names) - 1))
    for bar, v in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    ax.set(ylabel="test macro-F1", ylim=(0, 1.05), title="Modality removal")
    return _save(fig, path)


def write_plots(labels, probs, classes: list[str], metrics: dict, out_dir: Path) -> list[Path]:
    """Write every PNG and the DVC plot data files into `out_dir`; return the paths written."""
    out_dir = Path(out_dir)
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    preds = probs.argmax(1)
    written = []

    with atomic_path(out_dir / "confusion.csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["actual", "predicted"])
        writer.writerows((classes[a], classes[p]) for a, p in zip(labels, preds))
    written.append(out_dir / "confusion.csv")
    written.append(plot_confusion_matrix(labels, preds, classes, out_dir / "confusion_matrix.png"))

    roc = curve_rows(labels, probs, classes, "roc")
    pr = curve_rows(labels, probs, classes, "pr")
    atomic_write_json(out_dir / "roc.json", {"roc": roc}, indent=None)
    atomic_write_json(out_dir / "pr.json", {"pr": pr}, indent=None)
    written += [out_dir / "roc.json", out_dir / "pr.json"]
    written.append(_plot_curves(roc, "fpr", "tpr", "ROC (one-vs-rest)", out_dir / "roc.png", diagonal=True))
    written.append(_plot_curves(pr, "recall", "precision", "Precision-recall (one-vs-rest)", out_dir / "pr.png",
                                diagonal=False))

    bins = reliability_bins(labels, probs)
    atomic_write_json(out_dir / "reliability.json", {"reliability": bins}, indent=1)
    written.append(out_dir / "reliability.json")
    written.append(plot_reliability(bins, out_dir / "reliability.png", metrics.get("ece")))

    written.append(plot_modality_bars(metrics, out_dir / "modality_f1.png"))
    return written
