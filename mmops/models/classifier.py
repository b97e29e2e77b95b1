"""The multimodal classifier: per-modality encoder -> projection -> fusion -> MLP head."""

from __future__ import annotations

import torch
from torch import nn

from mmops.config import ModelConfig
from mmops.models.registry import ENCODERS, FUSIONS


class MultimodalClassifier(nn.Module):
    """Any subset of text/image/audio; a missing modality is replaced by a learned embedding."""

    def __init__(self, cfg: ModelConfig, n_classes: int, load_weights: bool = True) -> None:
        super().__init__()
        self.modalities = list(cfg.modalities)
        width = cfg.width
        self.encoders = nn.ModuleDict(
            {
                m: ENCODERS.build(getattr(cfg, m).name, getattr(cfg, m).options, load_weights=load_weights)
                for m in self.modalities
            }
        )
        self.projections = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Linear(enc.out_dim, width), nn.LayerNorm(width), nn.GELU())
                for m, enc in self.encoders.items()
            }
        )
        self.missing = nn.ParameterDict({m: nn.Parameter(torch.randn(width) * 0.02) for m in self.modalities})
        self.fusion = FUSIONS.build(cfg.fusion.name, cfg.fusion.options, n_modalities=len(self.modalities), width=width)
        self.head = nn.Sequential(
            nn.Linear(self.fusion.out_dim, cfg.head.hidden),
            nn.GELU(),
            nn.Dropout(cfg.head.dropout),
            nn.Linear(cfg.head.hidden, n_classes),
        )

    def forward(self, batch: dict, drop: frozenset[str] = frozenset()) -> torch.Tensor:
        """Logits (B, n_classes). Modalities in `drop` are treated as missing for every sample."""
        tokens = [self._modality_token(m, batch, m in drop) for m in self.modalities]
        return self.head(self.fusion(torch.stack(tokens, dim=1)))

    def _modality_token(self, m: str, batch: dict, dropped: bool) -> torch.Tensor:
        present = batch["present"][m]
        token = self.missing[m].expand(present.shape[0], -1)
        if dropped or not bool(present.any()):
            return token
        inputs = batch[m]
        subset = {k: v[present] for k, v in inputs.items()} if isinstance(inputs, dict) else inputs[present]
        encoded = self.projections[m](self.encoders[m](subset))
        token = token.clone().to(encoded.dtype)
        token[present] = encoded
        return token


@torch.no_grad()
def with_frozen_embeddings(model: MultimodalClassifier, data: dict, batch_size: int = 128) -> dict:
    """Return `data` with frozen encoders' inputs replaced by their outputs, computed once.

    Frozen encoders give the same output every epoch; computing it once per split saves most
    of an epoch when the frozen encoder is a transformer.
    """
    out = dict(data)
    for m, encoder in model.encoders.items():
        if not getattr(encoder, "frozen", False) or m not in data:
            continue
        present = data["present"][m]
        device = next(model.parameters()).device
        embedding = torch.zeros(present.shape[0], encoder.out_dim)
        rows = present.nonzero().flatten()
        for start in range(0, len(rows), batch_size):
            idx = rows[start : start + batch_size]
            inputs = {k: v[idx].to(device) for k, v in data[m].items()}
            embedding[idx] = encoder(inputs).float().cpu()
        out[m] = {"embedding": embedding}
    return out
