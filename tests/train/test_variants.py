"""The recipe with the non-default components: gru_text + gated / cross_attention fusion, then the
model folder round trip (gru_text exports its tokenizer only)."""

from dataclasses import replace

import pytest
import torch

from mmops.catalog import Catalog
from mmops.inference.model_dir import load_model_dir
from mmops.inference.predict import predict_logits
from mmops.train.recipe import train
from mmops.features.shards import SplitView


@pytest.mark.parametrize("fusion", ["gated", "cross_attention"])
def test_gru_text_with_fusion_trains_and_round_trips(prepared, tiny_text_model, tmp_path, fusion):
    text = prepared.model.text.model_copy(update={"name": "gru_text", "options": {"pretrained": str(tiny_text_model), "hidden": 16, "embedding_dim": 16}})
    model = prepared.model.model_copy(update={
        "text": text, "fusion": prepared.model.fusion.model_copy(update={"name": fusion, "options": {}}),
        "modality_dropout": 0.2,
    })
    params = prepared.model_copy(update={
        "model": model,
        "train": prepared.train.model_copy(update={"epochs": 2, "device": "cpu", "grad_clip": 1.0, "schedule": "cosine"}),
    })
    paths = replace(Catalog.from_paths(prepared.paths), model=tmp_path / fusion)
    out = train(params, paths)
    assert (out / "text_backbone" / "tokenizer_config.json").exists()
    loaded = load_model_dir(out)
    assert type(loaded.model.encoders["text"]).__name__ == "GRUTextEncoder"
    test = SplitView(paths.split("test")).load()
    logits = predict_logits(loaded.model, test, torch.device("cpu"), 16)
    assert logits.shape == (len(test["labels"]), 10) and torch.isfinite(logits).all()
