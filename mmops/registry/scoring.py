"""Score registered models on the frozen test split from raw inputs, through `predict_frame` (as served)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from mmops.config import MODALITIES
from mmops.evaluate.latency import frozen_test_rows  # noqa: F401 - the gate's rows are the rows evaluate times
from mmops.evaluate.metrics import classification_metrics, probability_metrics
from mmops.inference.model_dir import LoadedModel
from mmops.inference.predict import predict_frame


def removed_modalities(keys: Iterable[str]) -> list[str]:
    """Modalities that `without_<m>.<metric>` keys ask to be scored with that modality blanked."""
    wanted = {k.split(".", 1)[0].removeprefix("without_") for k in keys if k.startswith("without_")}
    return [m for m in MODALITIES if m in wanted]


def score_predictions(labels: list[str], predictions: pd.DataFrame) -> dict:
    """Metrics from `predict_frame` output (label + one probability column per class)."""
    classes = [c for c in predictions.columns if c != "label"]
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[str(label)] for label in labels])
    return probability_metrics(y, predictions[classes].to_numpy(dtype=np.float64))


def score_model(model: LoadedModel, frame: pd.DataFrame, keys: Iterable[str] = ()) -> dict:
    """Metrics of a loaded model on raw test rows.

    Adds `without_<m>` accuracy/macro-F1 for each modality a `without_<m>.*` key in `keys` names,
    by blanking that column (a missing modality, as at serving time).
    """
    labels = list(frame["label"])
    inputs = frame[list(MODALITIES)]
    scores = score_predictions(labels, predict_frame(model, inputs))
    for modality in removed_modalities(keys):
        blanked = inputs.assign(**{modality: ""})
        scores[f"without_{modality}"] = classification_metrics(labels, list(predict_frame(model, blanked)["label"]))
    return scores
