"""Drift of a log window against a training reference (mmops/monitor/drift.py), on a generated dataset unlike
the demo: text + image only (no audio column), string labels, RGB images of 64..320 px, PNG and JPEG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datagen.unlike_demo import make_dataset
from PIL import Image

from mmops.catalog import Catalog
from mmops.config import PathsConfig
from mmops.config.monitor import DriftConfig, TriggerConfig
from mmops.data.manifest import read_manifest
from mmops.data.splits import assign_splits
from mmops.monitor import drift
from mmops.monitor.reference import CONFUSION_CSV, build_reference, split_rows
from mmops.monitor.summary import summarize

CLASSES = ("heron", "otter", "badger")
CFG = DriftConfig(min_rows=30, reference_rows=500)
TRIGGER = TriggerConfig(modalities=["text", "image"], max_accuracy_drop=0.1, min_feedback=20)


@pytest.fixture(scope="module")
def unlike(tmp_path_factory):
    """(catalogue, reference, in-domain window rows, shifted window rows) of a 180-row text+image dataset."""
    root = tmp_path_factory.mktemp("unlike-monitor")
    data = make_dataset(root / "data", n_per_class=60, classes=CLASSES, variant="no_audio", seed=3)
    paths = Catalog.from_paths(PathsConfig(features=root / "features", metrics=root / "metrics"), data=data)
    paths.features.mkdir()
    paths.metrics.mkdir()
    split = assign_splits(read_manifest(data), seed=5)
    split[["sample_id", "split"]].to_csv(paths.splits_csv, index=False)
    test = split[split["split"] == "test"]
    pd.DataFrame({"actual": test["label"], "predicted": test["label"]}).to_csv(paths.metrics / CONFUSION_CSV, index=False)
    reference = build_reference(paths, CFG, seed=0)
    held_out = pd.concat([split_rows(data, paths.splits_csv, s) for s in ("val", "test")], ignore_index=True)
    return paths, reference, held_out, shifted(held_out, root / "shifted")


def shifted(rows: pd.DataFrame, out: Path) -> pd.DataFrame:
    """The same rows as a new camera and a terse client would send them: small, washed-out grey images, short texts."""
    out.mkdir()
    rows = rows.copy()
    for i, path in enumerate(rows["image"]):
        if path:
            img = Image.open(path).convert("L").resize((48, 40))
            img = Image.fromarray((128 + np.asarray(img, dtype=np.float64) / 4).astype(np.uint8))
            img.save(out / f"{i}.png")
            rows.loc[i, "image"] = str(out / f"{i}.png")
    rows["text"] = [" ".join(t.split()[:3]) if t else t for t in rows["text"]]
    return rows


def window(rows: pd.DataFrame, labels: list[str] | None = None) -> pd.DataFrame:
    """Log rows for raw rows: their summary features and a predicted label (the true one by default)."""
    frame = pd.DataFrame([summarize(r) for r in rows.to_dict("records")])
    frame["label"] = labels if labels is not None else list(rows["label"])
    return frame


def check(reference, frame, cfg=CFG, **kw):
    return drift.check(reference, frame, cfg, TRIGGER, model_name="m", model_version="3", window_info={}, **kw)


def test_reference_holds_the_training_sample_and_test_predictions(unlike):
    paths, reference, _, _ = unlike
    features, predictions = drift.split_reference(reference)
    train = split_rows(paths.data, paths.splits_csv, "train")
    assert len(features) == len(train) == reference.attrs["sampled_rows"]  # under the bound: every row
    assert drift.reference_modalities(features) == ["text", "image"]  # no audio column: not monitored
    assert sorted(predictions["label"]) == sorted(pd.read_csv(paths.metrics / CONFUSION_CSV)["predicted"])
    widths = features["image.width"].dropna()
    assert widths.nunique() > 1 and widths.between(64, 320).all()  # the original sizes, not the model's input


def test_same_distribution_does_not_drift(unlike):
    _, reference, held_out, _ = unlike
    doc = check(reference, window(held_out))
    assert doc["status"] == "ok" and doc["window"]["n"] == len(held_out) >= CFG.min_rows
    assert set(doc["modalities"]) == {"text", "image"}
    assert not any(m["drifted"] for m in doc["modalities"].values()), doc["modalities"]
    assert doc["prediction"]["drifted"] is False
    assert doc["triggered"] is False and doc["reasons"] == []


def test_shifted_inputs_drift_per_modality_and_fire(unlike):
    _, reference, _, moved = unlike
    doc = check(reference, window(moved))
    image, text = doc["modalities"]["image"], doc["modalities"]["text"]
    assert image["drifted"] and text["drifted"]
    assert image["columns"]["image.width"]["drifted"] and image["columns"]["image.colourfulness"]["drifted"]
    assert image["columns"]["image.colourfulness"]["window_mean"] < image["columns"]["image.colourfulness"]["reference_mean"]
    assert image["columns"]["image.present"]["drifted"] is False  # as often present as in training
    assert doc["triggered"] and doc["fired"] == ["text", "image"]
    assert any(r.startswith("image drift") and "image.width" in r for r in doc["reasons"])


def test_a_modality_outside_the_trigger_is_reported_not_fired(unlike):
    _, reference, _, moved = unlike
    doc = drift.check(reference, window(moved), CFG, TRIGGER.model_copy(update={"modalities": ["image"]}),
                      model_name="m", model_version="3", window_info={})
    assert doc["modalities"]["text"]["drifted"] and doc["fired"] == ["image"]


def test_missing_modality_share_drifts_on_its_own(unlike):
    _, reference, held_out, _ = unlike
    no_images = held_out.assign(image="")
    doc = check(reference, window(no_images))
    image = doc["modalities"]["image"]
    assert image["drifted"] and image["presence_drifted"] and image["score"] is None  # no value column to test
    assert doc["modalities"]["text"]["drifted"] is False


def test_prediction_distribution_drift(unlike):
    _, reference, held_out, _ = unlike
    skewed = [CLASSES[0]] * len(held_out)  # the model answers one class only
    doc = check(reference, window(held_out, skewed))
    assert doc["prediction"]["drifted"] and doc["prediction"]["window_shares"] == {CLASSES[0]: 1.0}
    assert not doc["triggered"]  # `trigger.prediction` is off
    fired = drift.check(reference, window(held_out, skewed), CFG, TRIGGER.model_copy(update={"prediction": True}),
                        model_name="m", model_version="3", window_info={})
    assert fired["fired"] == ["prediction"]


def test_not_enough_data_never_fires(unlike):
    _, reference, _, moved = unlike
    few = moved.head(CFG.min_rows - 1)
    doc = check(reference, window(few), live={"n": 29, "accuracy": 0.1, "macro_f1": 0.1}, reference_accuracy=0.9)
    assert doc["status"] == f"not enough data (n={len(few)} < min_rows={CFG.min_rows}); nothing decided"
    assert doc["triggered"] is False and doc["reasons"] == []
    assert all(m["score"] is None and not m["drifted"] for m in doc["modalities"].values())


def test_live_accuracy_drop_fires_once_enough_feedback(unlike):
    _, reference, held_out, _ = unlike
    frame = window(held_out)
    low = {"n": TRIGGER.min_feedback, "accuracy": 0.6, "macro_f1": 0.55}
    doc = check(reference, frame, live=low, reference_accuracy=0.85)
    assert doc["live"]["accuracy_drop"] == pytest.approx(0.25)
    assert doc["fired"] == ["live_accuracy"] and "0.600" in doc["reasons"][0] and "0.850" in doc["reasons"][0]
    few = check(reference, frame, live=low | {"n": TRIGGER.min_feedback - 1}, reference_accuracy=0.85)
    assert few["triggered"] is False and few["live"]["accuracy_drop"] == pytest.approx(0.25)
    close = check(reference, frame, live=low | {"accuracy": 0.8}, reference_accuracy=0.85)
    assert close["triggered"] is False


@pytest.mark.parametrize("test", ["ks", "wasserstein", "psi"])
def test_each_column_test_tells_a_shift_from_noise(test):
    rng = np.random.default_rng(0)
    cfg = DriftConfig(test=test)
    ref = pd.Series(rng.normal(0, 1, 3000))
    same = drift.column_drift(ref, pd.Series(rng.normal(0, 1, 3000)), cfg)
    moved = drift.column_drift(ref, pd.Series(rng.normal(0.8, 1, 3000)), cfg)
    assert same["test"] == moved["test"] == test
    assert same["drifted"] is False and moved["drifted"] is True


def test_auto_picks_by_sample_size_and_few_values_are_categorical():
    rng = np.random.default_rng(1)
    small, large = pd.Series(rng.normal(size=200)), pd.Series(rng.normal(size=1500))
    assert drift.column_drift(small, small + 0.01, CFG)["test"] == "ks"
    assert drift.column_drift(large, large + 0.01, CFG)["test"] == "wasserstein"
    rates = pd.Series([16000.0] * 300 + [22050.0] * 300)
    result = drift.column_drift(rates, pd.Series([44100.0] * 300), CFG)
    assert result["test"] == "chisquare" and result["drifted"]
    assert drift.column_drift(pd.Series([1.0] * 50), pd.Series([1.0] * 50), CFG) == {
        "skipped": "constant 1.0 on both sides", "drifted": False}
