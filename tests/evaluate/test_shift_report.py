"""`shift.md`: in-domain vs shifted scores, one row per headline metric that both splits have."""

from __future__ import annotations

import numpy as np

from mmops.evaluate.evaluation import shift_report
from mmops.evaluate.metrics import probability_metrics

CLASSES = ("negative", "neutral", "positive")  # unlike the demo's ten digits


def _scores(rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, len(CLASSES), n)
    logits = rng.normal(0, noise, (n, len(CLASSES)))
    logits[np.arange(n), labels] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, probs


def _table(report: str) -> dict[str, list[float]]:
    rows = [line.strip("|").split("|") for line in report.splitlines() if line.startswith("| ") and "---" not in line]
    return {cells[0].strip(): [float(c) for c in cells[1:]] for cells in rows[1:]}


def test_every_headline_metric_of_both_splits_gets_a_row_roc_included():
    rng = np.random.default_rng(7)
    test, shifted = _scores(rng, 90, 1.0), _scores(rng, 45, 2.5)
    metrics = {**probability_metrics(*test), "n_test": 90, "shifted": {**probability_metrics(*shifted), "n": 45}}
    table = _table(shift_report(metrics))
    assert set(table) == {"accuracy", "macro_f1", "roc_auc_ovr_macro", "ece"}
    assert set(table) <= set(metrics) & set(metrics["shifted"])  # every row names a key evaluate really writes
    a, b, gap = table["roc_auc_ovr_macro"]
    assert (a, b) == (round(metrics["roc_auc_ovr_macro"], 3), round(metrics["shifted"]["roc_auc_ovr_macro"], 3))
    assert abs(gap - (metrics["roc_auc_ovr_macro"] - metrics["shifted"]["roc_auc_ovr_macro"])) < 1e-3
    assert a > b  # the noisier split ranks worse


def test_no_shifted_split_no_report():
    rng = np.random.default_rng(1)
    assert shift_report({**probability_metrics(*_scores(rng, 30, 1.0)), "n_test": 30}) == ""
