import json

import torch

from mmops import stages
from mmops.train import load_model_dir
from mmops.train.recipe import predict_logits


def _train(prepared, model_dir, **extra):
    params = prepared.model_copy(update={"paths": prepared.paths.model_copy(update={"model": model_dir})})
    if extra:
        params = params.model_copy(update={"train": params.train.model_copy(update=extra)})
    return params, stages.train(params)


def test_train_learns_and_checkpoints(prepared, tmp_path):
    _, out = _train(prepared, tmp_path / "m")
    history = json.loads((out / "history.json").read_text())
    assert (out / "checkpoint.pt").exists()
    assert (out / "text_backbone" / "config.json").exists()
    epochs = history["epochs"]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert history["summary"]["best_val_macro_f1"] > 0.2  # chance is 0.1


def test_training_is_deterministic(prepared, tmp_path):
    _, a = _train(prepared, tmp_path / "a", epochs=2)
    _, b = _train(prepared, tmp_path / "b", epochs=2)
    sa = torch.load(a / "checkpoint.pt", weights_only=True)["state_dict"]
    sb = torch.load(b / "checkpoint.pt", weights_only=True)["state_dict"]
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_early_stopping(prepared, tmp_path):
    _, out = _train(prepared, tmp_path / "es", epochs=30, patience=1, lr=0.0)
    history = json.loads((out / "history.json").read_text())
    assert history["summary"]["epochs_run"] == 2  # lr=0: no improvement after epoch 1


def test_model_dir_round_trip(prepared, tmp_path):
    params, out = _train(prepared, tmp_path / "rt", epochs=1)
    loaded = load_model_dir(out)
    assert loaded.classes == prepared.classes
    test = torch.load(prepared.paths.features / "test.pt", weights_only=True)
    logits = predict_logits(loaded.model, test, torch.device("cpu"), 16)
    again = predict_logits(load_model_dir(out).model, test, torch.device("cpu"), 16)
    assert logits.shape == (len(test["labels"]), 10)
    assert torch.equal(logits, again)
