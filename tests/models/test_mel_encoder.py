"""The log-mel CNN as params.yaml configures it: per-band normalisation over the sounding frames,
max over time (a cue anywhere in the window counts the same)."""

from __future__ import annotations

import math

import torch

from mmops.models.components import ENCODERS
from mmops.models.windows import MEL_FLOOR

OPTIONS = {"channels": [8, 16, 16], "stem_stride": 1, "norm": "band", "time_pool": "max", "dropout": 0.0}


def _clip(start: int, frames: int = 120, sounding: int = 100, gain: float = 0.0, noise: float = 0.0) -> torch.Tensor:
    """(1, 1, 40, frames): a band-dependent background, a rising line of 24 frames from `start`,
    floor padding after `sounding`."""
    mel = torch.linspace(-6.0, -3.0, 40).reshape(1, 1, 40, 1).repeat(1, 1, 1, frames)
    mel += noise * torch.randn(mel.shape, generator=torch.Generator().manual_seed(0))
    for t in range(24):
        mel[0, 0, 8 + t // 3, start + t] += 6.0
    mel += gain
    mel[..., sounding:] = math.log(MEL_FLOOR)
    return mel


def test_a_cue_counts_the_same_wherever_it_sits():
    enc = ENCODERS.build("mel_cnn_audio", OPTIONS).eval()
    with torch.no_grad():
        early, late = enc(_clip(24)), enc(_clip(24 + 32))  # a shift by a multiple of the pooling stride
        other = enc(_clip(24).flip(2))  # a falling line instead
    moved = (early - late).abs().max()  # only GroupNorm statistics near the padding differ
    assert moved < 0.05 and (early - other).abs().max() > 10 * moved


def test_band_norm_ignores_loudness_and_padding():
    enc = ENCODERS.build("mel_cnn_audio", OPTIONS).eval()
    x = _clip(20, noise=0.5)
    normed = enc.normalise(x)
    assert torch.all(normed[..., 100:] == 0)  # padding stays out, then zero
    sounding = normed[..., :100]
    assert torch.allclose(sounding.mean(-1), torch.zeros(40), atol=1e-3)
    assert torch.allclose(sounding.std(-1, unbiased=False), torch.ones(40), atol=1e-3)
    with torch.no_grad():
        assert torch.allclose(enc(x), enc(_clip(20, gain=3.0, noise=0.5)), atol=1e-3)  # 3 nepers louder: same output


def test_defaults_keep_the_first_layout_for_old_checkpoints():
    """An old checkpoint's options ({channels, stem_stride}) rebuild the old model: same keys, same maths."""
    old = ENCODERS.build("mel_cnn_audio", {"channels": [16, 32, 64], "stem_stride": 2})
    assert old.cfg.norm == "window" and old.cfg.time_pool == "grid" and old.out_dim == 64 * 4 * 4
    assert {k.split(".")[0] for k in old.state_dict()} == {"net"}
