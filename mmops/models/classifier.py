"""The multimodal classifier: per-modality encoder -> projection -> fusion -> MLP head."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from mmops.config import FeaturesConfig, ModelConfig
from mmops.models.batch import concat, index, map_tensors, scatter_rows, to_device
from mmops.models.components import ENCODERS, FUSIONS
from mmops.models.mode import ensure_eval, set_training
from mmops.models.windows import encode_clip, is_mel_clip, mel_frames


class MultimodalClassifier(nn.Module):
    """Any subset of text/image/audio; a missing modality is replaced by a learned embedding.

    `features` (default `FeaturesConfig()`) tells it what the data looks like: the image channels
    its image encoder takes, and the audio window (log-mel frames) its audio encoder sees at a time.
    """

    def __init__(
        self, cfg: ModelConfig, n_classes: int, load_weights: bool = True, features: FeaturesConfig | None = None
    ) -> None:
        super().__init__()
        features = features or FeaturesConfig()
        self.modalities = cfg.active()
        self.window_frames = mel_frames(features.audio, features.audio.window_seconds())
        width = cfg.width
        p = cfg.modality_dropout
        self.modality_dropout = {m: float(p.get(m, 0.0) if isinstance(p, dict) else p) for m in self.modalities}
        image_input = {"image": {"in_channels": features.image.channels}}
        self.encoders = nn.ModuleDict(
            {
                m: ENCODERS.build(
                    getattr(cfg, m).name, getattr(cfg, m).options, load_weights=load_weights, **image_input.get(m, {})
                )
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
        present = dict(batch["present"])
        if self.training and any(self.modality_dropout.values()):
            present = self._drop_modalities(present)
        tokens = [self._modality_token(m, batch, present[m], m in drop) for m in self.modalities]
        return self.head(self.fusion(torch.stack(tokens, dim=1)))

    def _drop_modalities(self, present: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Training only: treat each (sample, modality) as missing with its dropout probability,
        drawn from torch's RNG; a sample keeps at least one of the modalities it has."""
        had = torch.stack([present[m] for m in self.modalities], dim=1)  # (B, M) bool
        probs = torch.tensor([self.modality_dropout[m] for m in self.modalities], device=had.device)
        keep = had & (torch.rand(had.shape, device=had.device) >= probs)
        lost_all = had.any(1) & ~keep.any(1)
        if bool(lost_all.any()):
            # restore one present modality, chosen at random, for each sample that lost them all
            scores = torch.rand(had.shape, device=had.device).masked_fill(~had, -1.0)
            restore = torch.zeros_like(had).scatter_(1, scores.argmax(1, keepdim=True), True)
            keep = keep | (restore & lost_all.unsqueeze(1))
        return {**present, **{m: keep[:, i] for i, m in enumerate(self.modalities)}}

    def _modality_token(self, m: str, batch: dict, present: torch.Tensor, dropped: bool) -> torch.Tensor:
        token = self.missing[m].expand(present.shape[0], -1)
        if dropped or not bool(present.any()):
            return token
        subset = index(batch[m], present)
        # the frozen part precomputed by `with_frozen_embeddings` (frozen encoders only)
        features = self.pool(m, subset["embedding"]) if is_embedded(subset) else self.encode(m, subset)
        encoded = self.projections[m](features)
        token = token.clone().to(encoded.dtype)
        token[present] = encoded
        return token

    def encode(self, m: str, inputs) -> torch.Tensor:
        """Modality `m`'s encoder on its inputs; a log-mel clip goes window by window (`mmops.models.windows`)."""
        encoder = self.encoders[m]
        if is_mel_clip(inputs):
            return encode_clip(encoder, inputs, self.window_frames, encoder.training)
        return encoder(inputs)

    def embed(self, m: str, inputs):
        """The frozen part of modality `m`'s encoder (`encoder.embed`, else the whole encoder): cacheable."""
        encoder = self.encoders[m]
        return encoder.embed(inputs) if hasattr(encoder, "embed") else self.encode(m, inputs)

    def pool(self, m: str, embedded) -> torch.Tensor:
        """The trainable part of modality `m`'s encoder on `embed`'s output (identity for most encoders)."""
        encoder = self.encoders[m]
        return encoder.pool(embedded) if hasattr(encoder, "pool") else embedded


def is_embedded(inputs) -> bool:
    return isinstance(inputs, dict) and "embedding" in inputs


@torch.no_grad()
def with_frozen_embeddings(
    model: MultimodalClassifier,
    data: dict,
    batch_size: int = 128,
    skip: Iterable[str] = (),
) -> dict:
    """Return `data` with frozen encoders' inputs replaced by their frozen part's output,
    {"embedding": (N, D)} (or a dict of tensors, e.g. token states for attention pooling).

    Frozen encoders give the same output every epoch; training computes it once per shard and
    caches it across runs (`mmops.features.frozen`, keyed by `mmops/models/embedding_cache.py`).
    Modalities in `skip` (e.g. augmented ones, whose inputs change every epoch) and inputs
    already embedded are left as they are.
    """
    out = dict(data)
    device = next(model.parameters()).device
    for m, encoder in model.encoders.items():
        if not getattr(encoder, "frozen", False) or m not in data or m in skip or is_embedded(data[m]):
            continue
        present = data["present"][m]
        idx = present.nonzero().flatten()
        if not len(idx):
            continue  # no row has this modality: its inputs stay (the model never encodes them)
        inputs, n = index(data[m], idx), len(idx)
        was_training = encoder.training
        ensure_eval(encoder)
        chunks = (index(inputs, torch.arange(s, min(s + batch_size, n))) for s in range(0, n, batch_size))
        # float32 on CPU, except what the encoder chose to keep compact (fp16 token states)
        parts = [
            map_tensors(model.embed(m, to_device(chunk, device)), lambda t: (t if t.dtype == torch.float16 else t.float()).cpu())
            for chunk in chunks
        ]
        set_training(encoder, was_training)
        encoded = concat(parts) if isinstance(parts[0], dict) else torch.cat(parts)
        out[m] = {"embedding": scatter_rows(encoded, idx, present.shape[0])}
    return out
