"""Audio augmentation keeps padding as padding: masks and added noise act on the frames that sound,
so an encoder that leaves padding out (per-band normalisation) still can."""

from __future__ import annotations

import math

import torch

from mmops.config import MelNoiseConfig, SpecAugmentConfig
from mmops.models.augment import mel_noise, spec_augment
from mmops.models.windows import MEL_FLOOR, sounding_frames


def _padded(batch: int = 8, frames: int = 100, sounding: int = 60) -> torch.Tensor:
    x = torch.randn(batch, 1, 40, frames, generator=torch.Generator().manual_seed(0)) - 4.0
    x[..., sounding:] = math.log(MEL_FLOOR)
    return x


def test_spec_augment_masks_sound_with_its_mean_and_leaves_padding():
    x = _padded()
    torch.manual_seed(0)
    out = spec_augment(x, SpecAugmentConfig(time_mask=20, freq_mask=10, n_masks=2))
    assert torch.equal(out[..., 60:], x[..., 60:])  # padding untouched
    assert torch.equal(sounding_frames(out), sounding_frames(x))
    changed = out[..., :60] != x[..., :60]
    assert changed.any()
    fill = out[..., :60][changed]
    assert fill.min() > -6.0 and fill.max() < -2.0  # the mean of the sound (about -4), not of sound + padding


def test_mel_noise_only_on_sounding_frames():
    x = _padded()
    torch.manual_seed(0)
    out = mel_noise(x, MelNoiseConfig(p=1.0, snr_db=(0.0, 0.0)))
    assert torch.equal(out[..., 60:], x[..., 60:])
    assert (out[..., :60] > x[..., :60]).float().mean() > 0.99  # noise adds power wherever there is sound
