"""Fixtures for encoder tests: torchvision ResNet-18 weights (the tiny wav2vec2 is in tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def resnet_state_dict() -> dict[str, torch.Tensor]:
    """A (randomly initialised) torchvision resnet18 state dict: 3-channel conv1, 1000-class fc."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    return resnet18(weights=None).state_dict()
