"""Training-time augmentation chosen by config (`train.augment`), off by default.

SpecAugment masks time and frequency bands of log-mel spectrograms; image jitter applies a
small random shift / rotation / scale. Both act on featurized batches (B, 1, H, W) (rows of a missing modality are
ignored by the model anyway) and draw from torch's RNG (seeded by the recipe).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mmops.config import AugmentConfig, ImageJitterConfig, SpecAugmentConfig


def _band_mask(n: int, size: int, max_width: int, n_masks: int, device) -> torch.Tensor:
    """(n, size) bool: True inside `n_masks` random bands of width < max_width per row."""
    pos = torch.arange(size, device=device)
    mask = torch.zeros(n, size, dtype=torch.bool, device=device)
    for _ in range(n_masks):
        width = torch.randint(0, max_width + 1, (n, 1), device=device)
        start = (torch.rand(n, 1, device=device) * (size - width + 1).clamp(min=1)).long()
        mask |= (pos >= start) & (pos < start + width)
    return mask


def spec_augment(x: torch.Tensor, cfg: SpecAugmentConfig) -> torch.Tensor:
    """Mask random frequency bands and time spans of (B, 1, n_mels, frames) to the sample's mean."""
    b, _, n_mels, frames = x.shape
    freq = _band_mask(b, n_mels, min(cfg.freq_mask, n_mels), cfg.n_masks, x.device)
    time = _band_mask(b, frames, min(cfg.time_mask, frames), cfg.n_masks, x.device)
    masked = freq[:, None, :, None] | time[:, None, None, :]
    fill = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    return torch.where(masked, fill, x)


def image_jitter(x: torch.Tensor, cfg: ImageJitterConfig) -> torch.Tensor:
    """Random affine (shift, rotation, scale) of (B, C, H, W); the border is filled with the edge value."""
    b = x.shape[0]
    u = lambda: torch.rand(b, device=x.device) * 2 - 1  # noqa: E731  uniform in [-1, 1]
    angle = u() * math.radians(cfg.max_rotate_deg)
    scale = 1 + u() * cfg.max_scale
    shift = torch.stack([u(), u()], dim=1) * cfg.max_shift * 2  # grid coordinates span [-1, 1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def augment_batch(batch: dict, cfg: AugmentConfig) -> dict:
    """A copy of `batch` with the configured augmentations applied to present rows."""
    out = dict(batch)
    if cfg.specaugment is not None and isinstance(batch.get("audio"), torch.Tensor):
        out["audio"] = spec_augment(batch["audio"], cfg.specaugment)
    if cfg.image_jitter is not None and isinstance(batch.get("image"), torch.Tensor):
        out["image"] = image_jitter(batch["image"], cfg.image_jitter)
    return out
