"""Fusions: (B, n_modalities, width) modality tokens -> (B, out_dim)."""

from __future__ import annotations

import torch
from torch import nn

from mmops.models.registry import FUSIONS
from mmops.registry_base import ComponentConfig


class ConcatConfig(ComponentConfig):
    pass


@FUSIONS.register("concat", ConcatConfig)
class ConcatFusion(nn.Module):
    """Concatenate the modality tokens."""

    def __init__(self, cfg: ConcatConfig, n_modalities: int, width: int) -> None:
        super().__init__()
        self.out_dim = n_modalities * width

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.flatten(1)
