"""Every registered encoder and fusion: forward shapes and one backward step."""

import pytest
import torch

from mmops.params_file import load_params
from mmops.models import ENCODERS, FUSIONS, MultimodalClassifier, tokenizer_source


def _inputs(name: str, n: int = 4, vocab: int = 40):
    if name in ("hf_text", "gru_text"):
        mask = torch.ones(n, 8, dtype=torch.long)
        mask[0, 3:] = 0  # one short sequence
        return {"input_ids": torch.randint(1, vocab, (n, 8)), "attention_mask": mask}
    if name in ("small_cnn_image", "resnet18_image", "resnet50_image"):
        return torch.randn(n, 1, 16, 16)
    if name == "hf_audio":  # raw waveforms, zero-padded, one of them short
        length = torch.tensor([4000] * (n - 1) + [1500])
        return {"waveform": torch.randn(n, 4000) * (torch.arange(4000) < length[:, None]), "length": length}
    if name == "mel_cnn_audio":
        return torch.randn(n, 1, 40, 50)
    raise AssertionError(f"add inputs for the new encoder {name!r} to this test")


@pytest.mark.parametrize("name", ENCODERS.names())
def test_encoder_forward_backward(name, tiny_text_model, request):
    options = {"pretrained": str(tiny_text_model)} if name.endswith("_text") else {}
    if name == "hf_audio":
        options = {"pretrained": str(request.getfixturevalue("tiny_audio_model"))}
    if name in ("hf_text", "hf_audio"):
        options["trainable"] = True
    torch.manual_seed(0)
    encoder = ENCODERS.build(name, options)
    out = encoder(_inputs(name))
    assert out.shape == (4, encoder.out_dim)
    out.square().mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


@pytest.mark.parametrize("name", FUSIONS.names())
@pytest.mark.parametrize("n_mod", [1, 3])
def test_fusion_forward_backward(name, n_mod):
    torch.manual_seed(0)
    fusion = FUSIONS.build(name, {}, n_modalities=n_mod, width=16)
    tokens = torch.randn(5, n_mod, 16, requires_grad=True)
    out = fusion(tokens)
    assert out.shape == (5, fusion.out_dim)
    out.sum().backward()
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0


def test_gated_weights_are_per_sample_softmax():
    fusion = FUSIONS.build("gated", {"hidden": 8}, n_modalities=3, width=16)
    tokens = torch.randn(5, 3, 16)
    out = fusion(tokens)
    w = fusion.last_weights
    assert w.shape == (5, 3)
    assert torch.allclose(w.sum(1), torch.ones(5))
    assert torch.allclose(out, (w.unsqueeze(-1) * tokens).sum(1), atol=1e-6)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_cross_attention_options(pool):
    fusion = FUSIONS.build("cross_attention", {"layers": 2, "heads": 2, "dropout": 0.0, "pool": pool}, n_modalities=3, width=16)
    fusion.eval()
    tokens = torch.randn(2, 3, 16)
    out = fusion(tokens)
    # tokens interact: changing one modality changes the fused vector
    changed = tokens.clone()
    changed[:, 2] = torch.randn(2, 16)  # (a constant shift would be normalised away)
    assert not torch.allclose(fusion(changed), out)
    with pytest.raises(ValueError, match="divisible"):
        FUSIONS.build("cross_attention", {"heads": 3}, n_modalities=3, width=16)
    with pytest.raises(Exception):
        FUSIONS.build("cross_attention", {"nope": 1}, n_modalities=3, width=16)


@pytest.mark.parametrize("fusion", ["gated", "cross_attention"])
def test_classifier_with_fusion_and_gru(fusion, tiny_text_model):
    params = load_params(None, [
        "model.text.name=gru_text", f"model.text.options.pretrained={tiny_text_model}",
        "model.width=16", f"model.fusion.name={fusion}",
    ])
    assert tokenizer_source(params.model) == str(tiny_text_model)
    torch.manual_seed(0)
    model = MultimodalClassifier(params.model, 10)
    n = 4
    batch = {
        "text": _inputs("gru_text", n), "image": _inputs("small_cnn_image", n), "audio": _inputs("mel_cnn_audio", n),
        "present": {m: torch.ones(n, dtype=torch.bool) for m in ("text", "image", "audio")},
        "labels": torch.randint(0, 10, (n,)),
    }
    torch.nn.functional.cross_entropy(model(batch), batch["labels"]).backward()
    assert model.encoders["text"].embedding.weight.grad is not None


def test_ready_config_cnn_rnn_loads():
    from pathlib import Path

    params = load_params(Path(__file__).resolve().parents[2] / "configs" / "cnn_rnn_image_text.yaml", [])
    assert params.model.modalities == ["text", "image"]
    assert params.model.text.name == "gru_text" and params.model.image.name == "small_cnn_image"
    assert params.model.fusion.name == "concat"
