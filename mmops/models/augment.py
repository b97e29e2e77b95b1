"""Training-time augmentation chosen by config (`train.augment`), off by default.

SpecAugment masks time and frequency bands of log-mel spectrograms; spec warp stretches their
mel and time axes (other speakers, other speaking rates); mel noise adds coloured noise in the
mel power domain (other noise colours and levels); image jitter applies a random shift /
rotation / scale. They act on featurized batches: images (B, C, H, W), log-mel clips
{"mel": (B, 1, n_mels, frames), "frames": (B,)} (the whole stored clip, before a window is cut;
rows of a missing modality are ignored by the model anyway), and draw from torch's RNG (seeded
by the recipe).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mmops.config import (
    AugmentConfig,
    ImageJitterConfig,
    MelNoiseConfig,
    SpecAugmentConfig,
    SpecWarpConfig,
)
from mmops.models.windows import is_mel_clip, sounding_frames


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
    """Mask random frequency bands and time spans of (B, 1, n_mels, frames) to the mean of the
    sample's sounding frames; padding stays padding (an encoder tells it from sound)."""
    b, _, n_mels, frames = x.shape
    freq = _band_mask(b, n_mels, min(cfg.freq_mask, n_mels), cfg.n_masks, x.device)
    time = _band_mask(b, frames, min(cfg.time_mask, frames), cfg.n_masks, x.device)
    sounding = sounding_frames(x)
    masked = (freq[:, None, :, None] | time[:, None, None, :]) & sounding
    weights = sounding.to(x.dtype).expand_as(x)
    fill = ((x * weights).sum(dim=(2, 3), keepdim=True) / weights.sum(dim=(2, 3), keepdim=True).clamp(min=1.0))
    return torch.where(masked, fill.expand_as(x), x)


def _uniform(b: int, low: float, high: float, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(b, device=device)


def spec_warp(x: torch.Tensor, cfg: SpecWarpConfig) -> torch.Tensor:
    """Stretch (B, 1, n_mels, frames) along mel (anchored at 0 Hz) and time (anchored at the start);
    uncovered bins take the sample's minimum (silence)."""
    b = x.shape[0]
    freq = _uniform(b, 1 - cfg.max_freq_warp, 1 + cfg.max_freq_warp, x.device)
    time = _uniform(b, 1 - cfg.max_time_warp, 1 + cfg.max_time_warp, x.device)
    zero = torch.zeros_like(freq)
    # grid x = time (width), y = mel (height); output coordinate u samples input (u + 1) / s - 1
    theta = torch.stack(
        [torch.stack([1 / time, zero, 1 / time - 1], 1), torch.stack([zero, 1 / freq, 1 / freq - 1], 1)], 1
    )
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=True)
    floor = x.amin(dim=(1, 2, 3), keepdim=True)
    return F.grid_sample(x - floor, grid, padding_mode="zeros", align_corners=True) + floor


def _mel_centres(n_mels: int, nyquist_hz: float, device) -> torch.Tensor:
    top = 2595.0 * math.log10(1.0 + nyquist_hz / 700.0)
    mels = torch.linspace(0.0, top, n_mels + 2, device=device)[1:-1]
    return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)


def mel_noise(x: torch.Tensor, cfg: MelNoiseConfig) -> torch.Tensor:
    """Add noise of a random colour and level to the sounding frames of log-mel (B, 1, n_mels, frames),
    in the power domain."""
    b, _, n_mels, frames = x.shape
    power = torch.exp(x)
    k = _uniform(b, *cfg.tilt, x.device)[:, None]
    shape = (_mel_centres(n_mels, cfg.nyquist_hz, x.device)[None, :] / 1000.0) ** (2 * k)  # power ~ f^(2k)
    snr = 10.0 ** (_uniform(b, *cfg.snr_db, x.device) / 10.0)
    level = power.mean(dim=(1, 2, 3)) / snr / shape.mean(1)
    noise = (level[:, None] * shape)[:, None, :, None] * torch.empty_like(x).exponential_()  # periodogram-like
    keep = (torch.rand(b, device=x.device) < cfg.p)[:, None, None, None] & sounding_frames(x)  # padding stays
    return torch.where(keep, torch.log(power + noise), x)


def _background(x: torch.Tensor) -> torch.Tensor:
    """(B, C, 1, 1): a grey image's darkest value (the demo's digits are bright on dark); a colour
    image's mean edge colour (its darkest channel values would mix the object's colour in)."""
    if x.shape[1] == 1:
        return x.amin(dim=(1, 2, 3), keepdim=True)
    edges = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1)
    return edges.mean(-1)[..., None, None]


def image_jitter(x: torch.Tensor, cfg: ImageJitterConfig) -> torch.Tensor:
    """Random affine (shift, rotation, scale) of (B, C, H, W); uncovered area takes each image's
    background (`_background`), so a shrunken object does not drag streaks of its edge."""
    b = x.shape[0]
    u = lambda: torch.rand(b, device=x.device) * 2 - 1  # noqa: E731  uniform in [-1, 1]
    angle = u() * math.radians(cfg.max_rotate_deg)
    scale = 1 + u() * cfg.max_scale
    shift = torch.stack([u(), u()], dim=1) * cfg.max_shift * 2  # grid coordinates span [-1, 1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    background = _background(x)
    return F.grid_sample(x - background, grid, padding_mode="zeros", align_corners=False) + background


def augmented_modalities(cfg: AugmentConfig, batch: dict) -> set[str]:
    """Modalities of `batch` whose inputs `augment_batch` changes (so not precomputable)."""
    audio = any(v is not None for v in (cfg.specaugment, cfg.spec_warp, cfg.mel_noise))
    on = {
        "audio": audio and is_mel_clip(batch.get("audio")),
        "image": cfg.image_jitter is not None and isinstance(batch.get("image"), torch.Tensor),
    }
    return {m for m, enabled in on.items() if enabled}


def augment_batch(batch: dict, cfg: AugmentConfig) -> dict:
    """A copy of `batch` with the configured augmentations applied to present rows."""
    out = dict(batch)
    if is_mel_clip(batch.get("audio")):
        mel = batch["audio"]["mel"]
        # order matters: noise and warps change the signal, masks then hide parts of it
        for step, step_cfg in ((mel_noise, cfg.mel_noise), (spec_warp, cfg.spec_warp), (spec_augment, cfg.specaugment)):
            if step_cfg is not None:
                mel = step(mel, step_cfg)
        out["audio"] = {**batch["audio"], "mel": mel}
    if cfg.image_jitter is not None and isinstance(batch.get("image"), torch.Tensor):
        out["image"] = image_jitter(batch["image"], cfg.image_jitter)
    return out
