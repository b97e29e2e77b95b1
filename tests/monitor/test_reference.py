"""The training reference saved with a model version (mmops/monitor/reference.py): what it holds, its bound,
and the prediction fallback without evaluate's outputs. Data:
a generated text + audio set (no image column; WAV/FLAC/MP3 at 16..44.1 kHz, mono and stereo, string labels)."""

from __future__ import annotations

import pandas as pd
import pytest
from datagen.unlike_demo import make_dataset

from mmops.catalog import Catalog
from mmops.config import PathsConfig
from mmops.config.monitor import DriftConfig
from mmops.data.manifest import read_manifest
from mmops.data.splits import assign_splits
from mmops.monitor.reference import (
    CONFUSION_CSV,
    build_reference,
    read_reference,
    split_reference,
    write_reference,
)
from mmops.monitor.summary import SUMMARY_COLUMNS

CLASSES = ("low tide", "high tide")


@pytest.fixture(scope="module")
def audio_set(tmp_path_factory) -> Catalog:
    root = tmp_path_factory.mktemp("reference-set")
    data = make_dataset(root / "data", n_per_class=30, classes=CLASSES, variant="no_image", seed=11)
    paths = Catalog.from_paths(PathsConfig(features=root / "features", metrics=root / "metrics"), data=data)
    paths.features.mkdir()
    paths.metrics.mkdir()
    split = assign_splits(read_manifest(data), seed=2)
    split[["sample_id", "split"]].to_csv(paths.splits_csv, index=False)
    test = split[split["split"] == "test"]
    pd.DataFrame({"actual": test["label"], "predicted": [CLASSES[0]] * len(test)}).to_csv(
        paths.metrics / CONFUSION_CSV, index=False)
    return paths


def test_a_bounded_seeded_sample_of_training_rows(audio_set):
    cfg = DriftConfig(reference_rows=20)
    reference = build_reference(audio_set, cfg, seed=1)
    features, predictions = split_reference(reference)
    assert len(features) == 20 and reference.attrs["train_rows"] == 42 and reference.attrs["sampled_rows"] == 20
    assert list(reference.columns) == ["part", "label", *SUMMARY_COLUMNS]
    assert set(features["audio.sample_rate"].dropna()) <= {16000.0, 22050.0, 44100.0}
    assert features["audio.sample_rate"].nunique() > 1 and (features["image.present"] == 0).all()
    assert list(predictions["label"]) == [CLASSES[0]] * reference.attrs["predictions"]
    assert reference.attrs["predictions_from"] == f"evaluate ({CONFUSION_CSV})" and reference.attrs["seconds"] > 0
    again = build_reference(audio_set, cfg, seed=1)
    other = build_reference(audio_set, cfg, seed=2)
    pd.testing.assert_frame_equal(features, split_reference(again)[0])
    assert not features.equals(split_reference(other)[0])


def test_the_reference_file_holds_no_raw_text_and_keeps_its_metadata(audio_set, tmp_path):
    reference = build_reference(audio_set, DriftConfig(), seed=0)
    path = write_reference(reference, tmp_path / "reference.parquet")
    raw = path.read_bytes()
    texts = [t for t in read_manifest(audio_set.data)["text"] if t]
    assert texts and not any(t.encode() in raw or t.split(".")[0][-30:].encode() in raw for t in texts)
    back = read_reference(path)
    assert back.attrs == reference.attrs
    pd.testing.assert_frame_equal(back, reference, check_dtype=False)  # object vs str: pandas 3 reads strings back as str


def test_without_evaluate_outputs_the_model_predicts_the_test_rows(prepared, served_model_dir, tmp_path):
    from mmops.inference.model_dir import load_model_dir

    paths = Catalog.from_paths(prepared.paths.model_copy(update={"metrics": tmp_path / "no-metrics"})).with_data(
        prepared.paths.data)
    paths = Catalog(paths.data, paths.reports, paths.features, served_model_dir, paths.metrics, paths.cache)
    reference = build_reference(paths, DriftConfig(reference_rows=40), seed=0)
    _, predictions = split_reference(reference)
    test_rows = pd.read_csv(paths.splits_csv, dtype=str).query("split == 'test'")
    assert reference.attrs["predictions_from"] == "predict_frame on the test split"
    assert len(predictions) == min(40, len(test_rows))
    assert set(predictions["label"]) <= set(load_model_dir(served_model_dir).classes)
