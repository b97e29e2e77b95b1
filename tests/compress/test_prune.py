"""Pruning: the requested sparsity is reached, `prune.remove` leaves plain parameters in the saved folder,
the fine-tune keeps the zeros, the gate refuses a drop beyond its bound, and the variant serves."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch.nn.utils import prune

from datagen.unlike_demo import make_dataset
from mmops import stages
from mmops.catalog import CHECKPOINT, Catalog
from mmops.compress.prune import apply_pruning, make_permanent, prunable, prune_and_compare, sparsity
from mmops.config import PruneConfig
from mmops.inference.model_dir import load_model_dir
from mmops.inference.predict import predict_frame
from mmops.params_file import load_params
from pipeline_overrides import overrides_for

CLASSES = ("low", "mid", "high", "top")


@pytest.fixture(scope="module")
def fp32(tmp_path_factory, tiny_text_model):
    """(model folder, catalogue): text + image + audio, four string labels, trained briefly."""
    root = tmp_path_factory.mktemp("prune")
    make_dataset(root / "data", n_per_class=9, classes=CLASSES, variant="full", p_uninformative=0.0)
    extra = {"train.epochs": 3, "train.patience": 100, "train.device": "cpu", "train.batch_size": 8}
    params = load_params(None, overrides_for(root, tiny_text_model, **extra))
    paths = Catalog.from_paths(params.paths)
    stages.validate(params, paths)
    stages.preprocess(params, paths)
    return stages.train(params, paths), paths


@pytest.mark.parametrize("method", ["l1_unstructured", "ln_structured"])
def test_pruning_reaches_the_requested_sparsity_and_remove_leaves_plain_weights(fp32, method):
    model = load_model_dir(fp32[0]).model
    frozen = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("encoders.text.backbone")}
    head = model.head[-1].weight.detach().clone()
    targets = apply_pruning(model, PruneConfig(method=method, amount=0.4))
    assert targets and all(prune.is_pruned(m) for m, _ in targets)
    weights, rows = sparsity(targets)
    if method == "l1_unstructured":  # one global threshold: 40 % of all pruned weights, not of each layer
        assert weights == pytest.approx(0.4, abs=2e-3)
        per_layer = [float((m.weight == 0).float().mean()) for m, _ in targets]
        assert max(per_layer) - min(per_layer) > 0.05
    else:  # 40 % of each layer's output channels / rows, whole
        for m, _ in targets:
            dead = int((m.weight.flatten(1) == 0).all(1).sum())
            assert dead == round(0.4 * m.weight.shape[0])
        assert rows == pytest.approx(weights, abs=0.02)
    make_permanent(targets)
    keys = set(model.state_dict())
    assert not any(k.endswith(("_orig", "_mask")) for k in keys) and not any(prune.is_pruned(m) for m, _ in targets)
    assert sparsity(targets)[0] == weights  # the zeros are now in the plain weights
    assert torch.equal(model.head[-1].weight, head)  # the class rows are never pruned
    assert all(torch.equal(model.state_dict()[k], v) for k, v in frozen.items())  # the frozen encoder is whole


def test_only_trainable_conv_and_linear_layers_are_targets(fp32):
    model = load_model_dir(fp32[0]).model
    names = {id(m): n for n, m in model.named_modules()}
    targeted = {names[id(m)] for m, _ in prunable(model)}
    assert any(n.startswith("encoders.image") for n in targeted) and any(n.startswith("encoders.audio") for n in targeted)
    assert not any(n.startswith("encoders.text.backbone") for n in targeted)  # frozen BERT
    assert "head.3" not in targeted and "head.0" in targeted


@pytest.fixture(scope="module")
def pruned(fp32, tmp_path_factory):
    model_dir, paths = fp32
    out = tmp_path_factory.mktemp("pruned") / "model_pruned"
    cfg = PruneConfig(method="l1_unstructured", amount=0.6, epochs=2)
    return prune_and_compare(model_dir, paths.features, paths.cache, cfg, out), out


def test_the_saved_variant_is_permanent_sparse_and_compared(pruned, fp32):
    report, out = pruned
    ckpt = torch.load(out / CHECKPOINT, weights_only=True)
    assert not any(k.endswith(("_orig", "_mask")) for k in ckpt["state_dict"])  # prune.remove ran before saving
    assert not any(k.startswith("encoders.text.backbone") for k in ckpt["state_dict"])  # referenced by sha256
    assert ckpt["pruning"]["method"] == "l1_unstructured"
    loaded = load_model_dir(out).model
    assert not any(prune.is_pruned(m) for m in loaded.modules())
    weights, _ = sparsity(prunable(loaded))
    assert weights == pytest.approx(0.6, abs=2e-3)  # the fine-tune moved no pruned weight
    assert report.details["sparsity of pruned weights"] == pytest.approx(weights, abs=1e-4)
    # dense tensors keep their shape: the serialized weights do not shrink; gzip sees the zeros
    assert report.size_ratio == pytest.approx(1.0, abs=0.01)
    assert report.gzip_ratio < 0.9
    assert report.accuracy_drop == pytest.approx(report.accuracy_fp32 - report.accuracy_variant, abs=1e-6)
    assert report.accepted == (report.accuracy_drop <= report.max_accuracy_drop)
    fp32_weights = sparsity(prunable(load_model_dir(fp32[0]).model))[0]
    assert fp32_weights < 0.01


def test_the_pruned_variant_predicts_raw_rows_through_the_shared_path(pruned, fp32):
    data = fp32[1].data
    rows = pd.read_csv(data / "manifest.csv", dtype=str, keep_default_na=False).head(4)
    frame = pd.DataFrame({"text": rows["text"], "image": [str(data / p) if p else None for p in rows["image"]],
                          "audio": [str(data / p) if p else None for p in rows["audio"]]})
    frame.loc[0, "audio"] = None
    pred = predict_frame(load_model_dir(pruned[1]), frame)
    assert list(pred.columns) == ["label", *sorted(CLASSES)] and set(pred["label"]) <= set(CLASSES)


def test_the_gate_refuses_a_drop_beyond_the_bound(fp32, tmp_path):
    model_dir, paths = fp32
    cfg = PruneConfig(method="ln_structured", amount=0.3, epochs=1, max_accuracy_drop=-1.0)
    report = prune_and_compare(model_dir, paths.features, paths.cache, cfg, tmp_path / "p")
    assert not report.accepted and "not registered" in report.markdown()
    assert report.details["all-zero channels/rows"] > 0.25

