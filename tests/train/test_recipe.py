import json
from dataclasses import replace

import torch

from mmops import stages
from mmops.catalog import CHECKPOINT, HISTORY_JSON, Catalog
from mmops.inference.model_dir import load_model_dir
from mmops.inference.predict import predict_logits
from mmops.features.shards import SplitView


def _train(prepared, model_dir, **extra):
    params = prepared.model_copy(update={"train": prepared.train.model_copy(update=extra)})
    return stages.train(params, replace(Catalog.from_paths(prepared.paths), model=model_dir))


def test_train_learns_and_checkpoints(prepared, tmp_path):
    out = _train(prepared, tmp_path / "m")
    history = json.loads((out / HISTORY_JSON).read_text())
    assert (out / CHECKPOINT).exists()
    assert (out / "text_backbone" / "config.json").exists()
    epochs = history["epochs"]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert history["summary"]["best_val_macro_f1"] > 0.2  # chance is 0.1


def test_training_is_deterministic(prepared, tmp_path):
    a = _train(prepared, tmp_path / "a", epochs=2)
    b = _train(prepared, tmp_path / "b", epochs=2)
    sa = torch.load(a / CHECKPOINT, weights_only=True)["state_dict"]
    sb = torch.load(b / CHECKPOINT, weights_only=True)["state_dict"]
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_early_stopping(prepared, tmp_path):
    out = _train(prepared, tmp_path / "es", epochs=30, patience=1, min_epochs=1, lr=0.0)
    history = json.loads((out / HISTORY_JSON).read_text())
    assert history["summary"]["epochs_run"] == 2  # lr=0: no improvement after epoch 1


def test_no_early_stop_before_min_epochs(prepared, tmp_path):
    out = _train(prepared, tmp_path / "min", epochs=30, patience=1, min_epochs=4, lr=0.0)
    summary = json.loads((out / HISTORY_JSON).read_text())["summary"]
    assert summary["epochs_run"] == 4 and summary["train"]["min_epochs"] == 4
    assert "not before epoch 4" in summary["budget"] and "min_epochs pinned" in summary["budget"]


def test_model_dir_round_trip(prepared, tmp_path):
    out = _train(prepared, tmp_path / "rt", epochs=1)
    loaded = load_model_dir(out)
    assert loaded.classes == prepared.classes
    test = SplitView(Catalog.from_paths(prepared.paths).split("test")).load()
    logits = predict_logits(loaded.model, test, torch.device("cpu"), 16)
    again = predict_logits(load_model_dir(out).model, test, torch.device("cpu"), 16)
    assert logits.shape == (len(test["labels"]), 10)
    assert torch.equal(logits, again)
