"""Drift of a window of the prediction log against the model's training reference, and the decision.

Per summary column (`mmops.monitor.summary`) one two-sample test, chosen like Evidently's defaults:
numeric columns get Kolmogorov-Smirnov while either side has at most `AUTO_SMALL` values, else the
Wasserstein distance in units of the reference's standard deviation; columns of few distinct values
(e.g. `image.present`, a fixed sample rate) get chi-square (with a p-value test) or the
Jensen-Shannon distance (with a distance test). A column constant and equal on both sides carries
no information and is skipped, so fixed image sizes do not dilute a modality's share. A modality
drifts when at least `share` of its tested columns drift; the predicted labels are one categorical
column. (Evidently 0.7.23 does not import beside pandas 3, hence these few scipy tests.)

`check` returns the `drift.json` document:
    {"time", "model_name", "model_version", "window": {...}, "status",
     "modalities": {m: {"score", "drifted", "columns": {column: {"test", "score", "threshold", "drifted", ...}}}},
     "prediction": {"score", "drifted", ...}, "live": {...} | null, "triggered", "reasons": [str],
     "fired": [what crossed its threshold: a modality, "prediction" or "live_accuracy"]}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd
from scipy import stats

from mmops.config import MODALITIES
from mmops.config.monitor import DriftConfig, TriggerConfig
from mmops.monitor.reference import split_reference
from mmops.monitor.summary import MODALITY_COLUMNS

AUTO_SMALL = 1000  # values a side up to which `auto` uses p-value tests (Evidently's rule)
FEW_VALUES = 5  # a column with at most this many distinct values (both sides) is categorical
PSI_BINS = 10
EPS = 1e-4  # floor of a bin share (PSI and Jensen-Shannon of empty bins)


@dataclass(frozen=True)
class StatTest:
    """A two-sample test: `fn(reference, window) -> score`; drift when score < threshold (p-value) or > it (distance)."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    p_value: bool


def _ks(ref: np.ndarray, cur: np.ndarray) -> float:
    return float(stats.ks_2samp(ref, cur).pvalue)


def _wasserstein(ref: np.ndarray, cur: np.ndarray) -> float:
    scale = float(np.std(ref)) or float(np.mean(np.abs(ref))) or 1.0
    return float(stats.wasserstein_distance(ref, cur) / scale)


def _shares(ref: np.ndarray, cur: np.ndarray, edges: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin (or per-value, without `edges`) shares of both samples, floored at EPS."""
    if edges is None:
        values = np.union1d(ref, cur)
        r = np.array([(ref == v).sum() for v in values], dtype=np.float64)
        c = np.array([(cur == v).sum() for v in values], dtype=np.float64)
    else:
        r, c = np.histogram(ref, edges)[0].astype(np.float64), np.histogram(cur, edges)[0].astype(np.float64)
    return np.maximum(r / r.sum(), EPS), np.maximum(c / c.sum(), EPS)


def _psi(ref: np.ndarray, cur: np.ndarray) -> float:
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, PSI_BINS + 1)))
    if len(edges) < 2:
        edges = np.array([ref.min() - 0.5, ref.min() + 0.5])
    edges[0], edges[-1] = min(edges[0], cur.min()), max(edges[-1], cur.max())  # every window value in a bin
    r, c = _shares(ref, cur, edges)
    return float(np.sum((c - r) * np.log(c / r)))


def _chisquare(ref: np.ndarray, cur: np.ndarray) -> float:
    values = np.union1d(ref, cur)
    table = np.array([[(ref == v).sum() for v in values], [(cur == v).sum() for v in values]])
    if table.shape[1] < 2:
        return 1.0
    return float(stats.chi2_contingency(table)[1])


def _jensenshannon(ref: np.ndarray, cur: np.ndarray) -> float:
    from scipy.spatial.distance import jensenshannon

    r, c = _shares(ref, cur)
    return float(jensenshannon(r, c, base=2))


NUMERIC_TESTS = {t.name: t for t in (StatTest("ks", _ks, True), StatTest("wasserstein", _wasserstein, False),
                                     StatTest("psi", _psi, False))}
CATEGORICAL_TESTS = {t.name: t for t in (StatTest("chisquare", _chisquare, True),
                                         StatTest("jensenshannon", _jensenshannon, False))}


def pick_test(cfg: DriftConfig, n_ref: int, n_cur: int, categorical: bool) -> StatTest:
    """The test a column gets: `cfg.test` (auto: by sample size), categorical columns its categorical kin."""
    name = cfg.test
    if name == "auto":
        name = "ks" if min(n_ref, n_cur) <= AUTO_SMALL else "wasserstein"
    numeric = NUMERIC_TESTS[name]
    if not categorical:
        return numeric
    return CATEGORICAL_TESTS["chisquare" if numeric.p_value else "jensenshannon"]


def column_drift(ref: pd.Series, cur: pd.Series, cfg: DriftConfig, categorical: bool | None = None) -> dict:
    """One column's test on its non-missing values: {"test", "score", "threshold", "drifted", "n_reference",
    "n_window", "reference_mean", "window_mean"}, or {"skipped": why, "drifted": False}."""
    r, c = ref.dropna(), cur.dropna()
    if len(r) < 2 or len(c) < 2:
        return {"skipped": f"too few values (reference {len(r)}, window {len(c)})", "drifted": False}
    values = pd.concat([r, c]).unique()
    if len(values) == 1:
        value = values[0].item() if hasattr(values[0], "item") else values[0]
        return {"skipped": f"constant {value} on both sides", "drifted": False}
    if categorical is None:
        categorical = len(values) <= FEW_VALUES or not pd.api.types.is_numeric_dtype(r)
    test = pick_test(cfg, len(r), len(c), categorical)
    ra, ca = r.to_numpy(), c.to_numpy()
    if not categorical:
        ra, ca = ra.astype(np.float64), ca.astype(np.float64)
    score = test.fn(ra, ca)
    threshold = cfg.p_value if test.p_value else cfg.distance
    out = {"test": test.name, "kind": "p_value" if test.p_value else "distance", "score": score, "threshold": threshold,
           "drifted": bool(score < threshold if test.p_value else score > threshold),
           "n_reference": len(r), "n_window": len(c)}
    if not categorical:
        out |= {"reference_mean": float(ra.mean()), "window_mean": float(ca.mean())}
    return out


def modality_drift(reference: pd.DataFrame, window: pd.DataFrame, modality: str, cfg: DriftConfig) -> dict:
    """{"score": share of the tested value columns that drifted (None when none could be tested), "drifted",
    "columns"}. The share of rows that hold the modality (`<m>.present`) is tested on its own: a change
    in how often it is missing drifts the modality whatever its values do."""
    presence = f"{modality}.present"
    columns = {c: column_drift(reference[c], window[c], cfg, categorical=True if c == presence else None)
               for c in MODALITY_COLUMNS[modality] if c in reference and c in window}
    tested = [r for c, r in columns.items() if "skipped" not in r and c != presence]
    score = sum(r["drifted"] for r in tested) / len(tested) if tested else None
    presence_drifted = columns.get(presence, {}).get("drifted", False)
    return {"score": score, "drifted": bool(presence_drifted or (score is not None and score >= cfg.share)),
            "presence_drifted": presence_drifted, "columns": columns}


def prediction_drift(reference_labels: pd.Series, window_labels: pd.Series, cfg: DriftConfig) -> dict:
    """The predicted-label distribution as one categorical column, with both sides' label shares."""
    ref, cur = reference_labels.dropna().astype(str), window_labels.dropna().astype(str)
    out = column_drift(ref, cur, cfg, categorical=True)
    if "skipped" in out:
        out["score"] = None
    out["reference_shares"] = ref.value_counts(normalize=True).sort_index().round(4).to_dict()
    out["window_shares"] = cur.value_counts(normalize=True).sort_index().round(4).to_dict()
    return out


def reference_modalities(features: pd.DataFrame) -> list[str]:
    """The modalities that the reference holds data for (the model's)."""
    return [m for m in MODALITIES if f"{m}.present" in features and (features[f"{m}.present"] == 1).any()]


def decide(modalities: dict, prediction: dict, live: dict | None, reference_accuracy: float | None,
           trigger: TriggerConfig) -> dict[str, str]:
    """Why a retrain should start: {what fired (`audio`, `prediction`, `live_accuracy`): why}; empty: nothing."""
    reasons = {}
    for m in trigger.modalities:
        result = modalities.get(m)
        if result and result["drifted"]:
            drifted = ", ".join(c for c, r in result["columns"].items() if r["drifted"])
            share = "no value column" if result["score"] is None else f"{result['score']:.2f} of its value columns"
            reasons[m] = f"{m} drift: {share} drifted ({drifted})"
    if trigger.prediction and prediction.get("drifted"):
        reasons["prediction"] = (f"prediction drift: {prediction['test']} {prediction['score']:.3g} "
                                 f"vs threshold {prediction['threshold']}")
    if live and live.get("accuracy_drop") is not None and trigger.max_accuracy_drop is not None \
            and live["n"] >= trigger.min_feedback and live["accuracy_drop"] >= trigger.max_accuracy_drop:
        reasons["live_accuracy"] = (
            f"live accuracy {live['accuracy']:.3f} on {live['n']} labelled predictions is {live['accuracy_drop']:.3f} "
            f"below the registered test accuracy {reference_accuracy:.3f} (max drop {trigger.max_accuracy_drop})")
    return reasons


def with_drop(live: dict | None, reference_accuracy: float | None) -> dict | None:
    """Live metrics plus the reference test accuracy and the drop from it."""
    if live is None:
        return None
    drop = None if reference_accuracy is None else reference_accuracy - live["accuracy"]
    return live | {"reference_accuracy": reference_accuracy, "accuracy_drop": drop}


def check(reference: pd.DataFrame, window: pd.DataFrame, cfg: DriftConfig, trigger: TriggerConfig, *,
          model_name: str, model_version: str, window_info: dict, live: dict | None = None,
          reference_accuracy: float | None = None, now: datetime | None = None) -> dict:
    """The drift document of `window` (log rows) against `reference` (`mmops.monitor.reference`)."""
    features, predictions = split_reference(reference)
    n = len(window)
    doc = {
        "time": (now or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        "model_name": model_name, "model_version": str(model_version),
        "window": window_info | {"n": n, "min_rows": cfg.min_rows},
        "reference": {"n_features": len(features), "n_predictions": len(predictions)},
        "live": with_drop(live, reference_accuracy),
    }
    modalities = reference_modalities(features)
    if n < cfg.min_rows:
        return doc | {
            "status": f"not enough data (n={n} < min_rows={cfg.min_rows}); nothing decided",
            "modalities": {m: {"score": None, "drifted": False, "columns": {}} for m in modalities},
            "prediction": {"score": None, "drifted": False}, "triggered": False, "reasons": [], "fired": [],
        }
    result = {m: modality_drift(features, window, m, cfg) for m in modalities}
    prediction = prediction_drift(predictions["label"], window["label"], cfg)
    reasons = decide(result, prediction, doc["live"], reference_accuracy, trigger)
    return doc | {"status": "ok", "modalities": result, "prediction": prediction,
                  "triggered": bool(reasons), "reasons": list(reasons.values()), "fired": list(reasons)}
