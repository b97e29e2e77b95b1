"""Frozen-encoder embeddings: computed once per shard content, reused across epochs and runs."""

from __future__ import annotations

import json

import pytest
import torch

from mmops.features.frozen import embedded_view
from mmops.features.shards import SplitView, write_split
from mmops.params_file import load_params
from mmops.models import MultimodalClassifier
from mmops.models.classifier import with_frozen_embeddings
from mmops.models.encoders import HFTextEncoder

LAYERS = "*.safetensors"


@pytest.fixture
def calls(monkeypatch):
    """Counts rows the (frozen) HF text encoder embeds."""
    seen = []
    original = HFTextEncoder.embed

    def counting(self, inputs):
        seen.append(inputs["input_ids"].shape[0])
        return original(self, inputs)

    monkeypatch.setattr(HFTextEncoder, "embed", counting)
    return seen


def _model(tiny_text_model, *extra):
    params = load_params(None, [f"model.text.options.pretrained={tiny_text_model}", "model.width=16", *extra])
    return MultimodalClassifier(params.model, 10)


def _data(n=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    present = torch.ones(n, dtype=torch.bool)
    present[3] = False
    return {
        "text": {"input_ids": torch.randint(1, 40, (n, 8), generator=g), "attention_mask": torch.ones(n, 8, dtype=torch.long)},
        "image": torch.randn(n, 1, 16, 16, generator=g),
        "audio": torch.randn(n, 1, 40, 50, generator=g),
        "present": {"text": present, "image": torch.ones(n, dtype=torch.bool), "audio": torch.ones(n, dtype=torch.bool)},
        "labels": torch.randint(0, 10, (n,), generator=g),
    }


def _embedded(model, data: dict, root, cache, rows_per_shard: int = 8, skip=()) -> dict:
    """`data` written as shards under `root` (once), embedded through the cache, read back whole."""
    if not (root / "index.json").exists():
        write_split(root, data, rows_per_shard)
    return embedded_view(model, SplitView(root), cache, skip).load()


def test_second_run_hits_the_cache(tiny_text_model, tmp_path, calls):
    data, cache = _data(), tmp_path / "cache"
    first = _embedded(_model(tiny_text_model), data, tmp_path / "split", cache)
    assert sorted(calls) == [4, 7, 8]  # the present rows of each of the 3 shards
    assert len(list(cache.rglob(LAYERS))) == 3  # one layer file per shard
    # trainable encoders' inputs are read as they are; the missing row stays a zero placeholder
    assert torch.equal(first["image"], data["image"]) and torch.equal(first["audio"], data["audio"])
    assert set(first["text"]) == {"embedding"}
    assert torch.equal(first["text"]["embedding"][3], torch.zeros(32))

    calls.clear()
    again = _embedded(_model(tiny_text_model), data, tmp_path / "split", cache)  # a new "run"
    assert calls == []
    assert torch.equal(again["text"]["embedding"], first["text"]["embedding"])
    # and it is what the encoder computes
    fresh = with_frozen_embeddings(_model(tiny_text_model), data)
    assert torch.allclose(fresh["text"]["embedding"], first["text"]["embedding"], atol=1e-6)


def test_other_inputs_or_other_weights_miss(tiny_text_model, tmp_path, calls):
    data, cache = _data(), tmp_path / "cache"
    _embedded(_model(tiny_text_model), data, tmp_path / "split", cache, rows_per_shard=20)
    calls.clear()

    changed = _data()
    changed["text"]["input_ids"][5, 2] = (changed["text"]["input_ids"][5, 2] % 39) + 1  # one token
    _embedded(_model(tiny_text_model), changed, tmp_path / "changed", cache, rows_per_shard=20)
    assert sum(calls) == 19
    calls.clear()

    model = _model(tiny_text_model)
    with torch.no_grad():
        model.encoders["text"].backbone.embeddings.word_embeddings.weight[7] += 0.01  # other weights
    other = _embedded(model, data, tmp_path / "split", cache)
    assert sum(calls) == 19
    calls.clear()

    cls_pooled = _embedded(_model(tiny_text_model, "model.text.options.pooling=cls"), data, tmp_path / "split", cache)
    assert sum(calls) == 19  # an option that changes the output is part of the key
    assert len(list(cache.rglob(LAYERS))) == 4
    assert not torch.equal(other["text"]["embedding"], cls_pooled["text"]["embedding"])


def test_skip_and_already_embedded_are_left_alone(tiny_text_model, tmp_path, calls):
    data, cache = _data(), tmp_path / "cache"
    model = _model(tiny_text_model)
    skipped = _embedded(model, data, tmp_path / "split", cache, skip={"text"})
    assert torch.equal(skipped["text"]["input_ids"], data["text"]["input_ids"])
    assert calls == [] and not list(cache.rglob(LAYERS))
    embedded = with_frozen_embeddings(model, data)
    calls.clear()
    assert with_frozen_embeddings(model, embedded)["text"] is embedded["text"]
    assert calls == []


def test_unreadable_cache_file_is_recomputed(tiny_text_model, tmp_path, calls):
    data, cache = _data(), tmp_path / "cache"
    first = _embedded(_model(tiny_text_model), data, tmp_path / "split", cache, rows_per_shard=20)
    (path,) = cache.rglob(LAYERS)
    path.write_bytes(b"truncated")
    calls.clear()
    again = _embedded(_model(tiny_text_model), data, tmp_path / "split", cache)
    assert sum(calls) == 19
    assert torch.equal(again["text"]["embedding"], first["text"]["embedding"])
    from safetensors.torch import load_file

    assert torch.equal(load_file(path)["text.embedding"], first["text"]["embedding"])


def test_training_runs_share_the_cache(prepared, tmp_path, calls):
    """Two training runs on the same features: the second never runs the frozen text encoder
    (not even for validation) and reaches the same weights."""
    from dataclasses import replace

    from mmops import stages
    from mmops.catalog import Catalog

    params = prepared.model_copy(update={"train": prepared.train.model_copy(update={"epochs": 2, "device": "cpu"})})
    paths = replace(Catalog.from_paths(prepared.paths), cache=tmp_path / "cache")
    a = stages.train(params, replace(paths, model=tmp_path / "a"))
    assert sum(calls) > 0
    assert len(list(paths.embeddings.rglob(LAYERS))) == 2  # train and val: one shard each
    calls.clear()
    b = stages.train(params, replace(paths, model=tmp_path / "b"))
    assert calls == []
    sa = torch.load(a / "checkpoint.pt", weights_only=True)["state_dict"]
    sb = torch.load(b / "checkpoint.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert json.loads((b / "history.json").read_text())["summary"] == json.loads((a / "history.json").read_text())["summary"]


def test_attention_pooling_caches_token_states_and_trains_only_the_pool(tiny_text_model, tmp_path, calls):
    """Attention pooling: the frozen backbone's token states are cached (float16, full width); the
    learned queries act after the cache, train, and do not change its key."""
    data = _data()
    data["text"]["attention_mask"][:, 6:] = 0  # padding at the end of every row
    model = _model(tiny_text_model, "model.text.options.pooling=attention", "model.text.options.heads=2")
    encoder = model.encoders["text"]
    assert encoder.out_dim == 2 * 32
    embedded = _embedded(model, data, tmp_path / "split", tmp_path / "cache", rows_per_shard=20)
    states = embedded["text"]["embedding"]["states"]
    assert states.dtype == torch.float16 and states.shape == (20, 8, 32)
    assert torch.equal(states[3], torch.zeros(8, 32))  # the row without text
    assert sum(calls) == 19

    # the cached path and the direct path give the same output
    model.eval()
    direct = model(data)
    via_cache = model(embedded)
    assert torch.allclose(direct, via_cache, atol=2e-3)

    # gradients reach the pool, never the frozen backbone
    model.train()
    torch.nn.functional.cross_entropy(model(embedded), data["labels"]).backward()
    assert encoder.attention.score.weight.grad is not None and encoder.attention.score.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder.backbone.parameters())

    # other pool weights: same cache entry (no new computation)
    with torch.no_grad():
        encoder.attention.score.weight += 1.0
    calls.clear()
    again = _embedded(model, data, tmp_path / "split", tmp_path / "cache")
    assert calls == [] and torch.equal(again["text"]["embedding"]["states"], states)
