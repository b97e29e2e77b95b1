"""Metric values on small hand-computed cases."""

import numpy as np
import pytest

from mmops.evaluate.metrics import (
    averaged_prf,
    expected_calibration_error,
    ovr_auc,
    probability_metrics,
    reliability_bins,
)


def test_perfect_predictions_give_auc_one_and_full_scores():
    labels = np.array([0, 1, 2, 0, 1, 2])
    probs = np.eye(3)[labels] * 0.9 + 0.1 / 3
    m = probability_metrics(labels, probs)
    assert m["roc_auc_ovr_macro"] == pytest.approx(1.0)
    assert m["pr_auc_ovr_macro"] == pytest.approx(1.0)
    assert m["auc_classes_scored"] == 3
    for key in ("accuracy", "macro_f1", "macro_precision", "macro_recall", "weighted_f1", "weighted_precision"):
        assert m[key] == pytest.approx(1.0), key


def test_inverted_scores_give_auc_zero():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.2, 0.8], [0.3, 0.7], [0.7, 0.3], [0.8, 0.2]])
    assert ovr_auc(labels, probs)["roc_auc_ovr_macro"] == pytest.approx(0.0)


def test_auc_skips_a_class_absent_from_the_labels():
    labels = np.array([0, 0, 1, 1])  # class 2 never occurs
    probs = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.6, 0.3]])
    m = ovr_auc(labels, probs)
    assert m["auc_classes_scored"] == 2
    assert m["roc_auc_ovr_macro"] == pytest.approx(1.0)
    assert np.isfinite(m["pr_auc_ovr_macro"])
    assert ovr_auc(np.array([1, 1]), probs[:2])["auc_classes_scored"] == 0  # one class only: nothing defined


def test_macro_and_weighted_prf_by_hand():
    labels = np.array([0, 0, 0, 1])
    preds = np.array([0, 0, 1, 1])
    m = averaged_prf(labels, preds, 2)
    # class 0: p=1, r=2/3, f=0.8 ; class 1: p=0.5, r=1, f=2/3
    assert m["macro_precision"] == pytest.approx(0.75)
    assert m["macro_recall"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert m["weighted_f1"] == pytest.approx(0.75 * 0.8 + 0.25 * 2 / 3)
    assert averaged_prf(labels, preds, 3)["macro_recall"] == pytest.approx((2 / 3 + 1 + 0) / 3)  # absent class 2


def test_ece_zero_for_a_perfectly_calibrated_toy():
    # 10 samples at confidence 0.8 with 8 correct, 10 at 0.6 with 6 correct.
    labels = np.array([0] * 8 + [1] * 2 + [0] * 6 + [1] * 4)
    probs = np.array([[0.8, 0.2]] * 10 + [[0.6, 0.4]] * 10)
    assert expected_calibration_error(labels, probs) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_overconfident_toy_by_hand():
    labels = np.array([0, 1, 0, 1])  # always predicts 0 at 0.9 → accuracy 0.5, gap 0.4
    probs = np.array([[0.9, 0.1]] * 4)
    assert expected_calibration_error(labels, probs) == pytest.approx(0.4)
    bins = reliability_bins(labels, probs)
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 4
    full = [b for b in bins if b["count"]]
    assert len(full) == 1 and full[0]["bin_lower"] < 0.9 <= full[0]["bin_upper"]
    assert full[0]["accuracy"] == pytest.approx(0.5) and full[0]["confidence"] == pytest.approx(0.9)


def test_confidence_one_lands_in_last_bin():
    bins = reliability_bins(np.array([0]), np.array([[1.0, 0.0]]))
    assert bins[-1]["count"] == 1
