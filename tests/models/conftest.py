"""Fixtures for encoder tests: a tiny wav2vec2 saved locally (no hub), torchvision ResNet-18 weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_audio_model(tmp_path_factory) -> Path:
    """A one-layer wav2vec2 (hidden 32, two conv layers: 1 frame per 20 samples) in safetensors."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    path = tmp_path_factory.mktemp("tiny-wav2vec2")
    config = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, vocab_size=8,
    )
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(path)
    assert (path / "model.safetensors").exists()
    return path


@pytest.fixture(scope="session")
def resnet_state_dict() -> dict[str, torch.Tensor]:
    """A (randomly initialised) torchvision resnet18 state dict: 3-channel conv1, 1000-class fc."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    return resnet18(weights=None).state_dict()
