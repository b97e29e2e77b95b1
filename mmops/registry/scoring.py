"""Score registered models on the frozen test split through their pyfunc (raw inputs, as served)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from mmops.data.manifest import read_manifest
from mmops.evaluate.metrics import classification_metrics, probability_metrics

MODALITY_COLUMNS = ("text", "image", "audio")


def frozen_test_rows(data_dir: Path, features_dir: Path) -> pd.DataFrame:
    """The frozen test split as raw rows with absolute media paths (what a client would send)."""
    df = read_manifest(data_dir).drop(columns=["split"], errors="ignore")
    splits = pd.read_csv(Path(features_dir) / "splits.csv", dtype=str)
    df = df.merge(splits, on="sample_id")
    test = df[df["split"] == "test"].reset_index(drop=True)
    for column in ("image", "audio"):
        test[column] = [str(Path(data_dir).resolve() / p) if p else "" for p in test[column]]
    return test



def removed_modalities(keys: Iterable[str]) -> list[str]:
    """Modalities that `without_<m>.<metric>` keys ask to be scored with that modality blanked."""
    wanted = {k.split(".", 1)[0].removeprefix("without_") for k in keys if k.startswith("without_")}
    return [m for m in MODALITY_COLUMNS if m in wanted]


def score_predictions(labels: list[str], predictions: pd.DataFrame) -> dict:
    """Metrics from a pyfunc's output (label + one probability column per class)."""
    classes = [c for c in predictions.columns if c != "label"]
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[str(label)] for label in labels])
    return probability_metrics(y, predictions[classes].to_numpy(dtype=np.float64))


def score_model(model, frame: pd.DataFrame, keys: Iterable[str] = ()) -> dict:
    """Metrics of a loaded pyfunc (or a `models:/` URI) on raw test rows.

    Adds `without_<m>` accuracy/macro-F1 for each modality a `without_<m>.*` key in `keys` names,
    by blanking that column (a missing modality, as at serving time).
    """
    if isinstance(model, str):
        import mlflow.pyfunc

        model = mlflow.pyfunc.load_model(model)
    labels = list(frame["label"])
    inputs = frame[list(MODALITY_COLUMNS)]
    scores = score_predictions(labels, model.predict(inputs))
    for modality in removed_modalities(keys):
        blanked = inputs.assign(**{modality: ""})
        scores[f"without_{modality}"] = classification_metrics(labels, list(model.predict(blanked)["label"]))
    return scores
