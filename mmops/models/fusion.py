"""Fusions: (B, n_modalities, width) modality tokens -> (B, out_dim)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from mmops.models.components import FUSIONS, ComponentConfig


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


class GatedConfig(ComponentConfig):
    hidden: int = Field(64, ge=1, description="width of the gating MLP")


@FUSIONS.register("gated", GatedConfig)
class GatedFusion(nn.Module):
    """Per-sample softmax weights over the modality tokens (a small MLP scores each); weighted sum.

    The weights of the last forward pass are kept in `last_weights` (B, n_modalities) for inspection.
    """

    def __init__(self, cfg: GatedConfig, n_modalities: int, width: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(width, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, 1))
        self.out_dim = width
        self.last_weights: torch.Tensor | None = None

    def weights(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.gate(tokens).squeeze(-1), dim=1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        weights = self.weights(tokens)
        self.last_weights = weights.detach()
        return (weights.unsqueeze(-1) * tokens).sum(1)


class CrossAttentionConfig(ComponentConfig):
    layers: int = Field(1, ge=1, le=12)
    heads: int = Field(4, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    ff_mult: int = Field(2, ge=1, le=8, description="feed-forward width = ff_mult * width")
    pool: Literal["concat", "cls", "mean"] = Field(
        "concat", description="concat: every attended modality token side by side (keeps each modality's "
        "evidence, like concat fusion, after cross-modal attention); cls: a learned CLS token; mean"
    )


@FUSIONS.register("cross_attention", CrossAttentionConfig)
class CrossAttentionFusion(nn.Module):
    """A small TransformerEncoder over the modality tokens (+ a learned modality-type embedding),
    then the attended tokens side by side (default), a learned CLS token, or their mean."""

    def __init__(self, cfg: CrossAttentionConfig, n_modalities: int, width: int) -> None:
        super().__init__()
        if width % cfg.heads:
            raise ValueError(f"cross_attention: width {width} is not divisible by heads {cfg.heads}")
        self.pool = cfg.pool
        self.type_embedding = nn.Parameter(torch.randn(n_modalities, width) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, width) * 0.02) if cfg.pool == "cls" else None
        layer = nn.TransformerEncoderLayer(
            width, cfg.heads, dim_feedforward=cfg.ff_mult * width, dropout=cfg.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out_dim = width * n_modalities if cfg.pool == "concat" else width

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens + self.type_embedding.to(tokens.dtype)
        if self.cls is not None:
            x = torch.cat([self.cls.to(x.dtype).expand(x.shape[0], -1, -1), x], dim=1)
        x = self.norm(self.encoder(x))
        if self.pool == "concat":
            return x.flatten(1)
        return x[:, 0] if self.cls is not None else x.mean(1)
