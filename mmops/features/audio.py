"""Audio: bounded decode with soundfile (WAV/FLAC/OGG/MP3), downmix, resample; then a log-mel
(torchaudio) or the raw waveform, whichever the configured audio encoder takes (its config's
`input_feature`).

Every decode is bounded before a sample is read: the header's sample rate must lie in
`SAMPLE_RATES` and its channel count be at most `MAX_CHANNELS`; only the first `clip_seconds()`
are read, block by block, each block downmixed at once (an 8-channel 192 kHz file never exists
in memory as 8 channels). Resampling is polyphase (scipy's `resample_poly`) by a ratio whose
terms are at most `MAX_RATIO_TERM`: an odd rate such as 16,001 Hz is treated as the nearest
rate with a small ratio (here 16,000 Hz, 0.006 % off; never more than 0.1 %, about 2 cents), so
the filter has at most ~20,000 taps and the cost is ~20 multiply-adds per sample for any rate
pair. The usual rates (8k, 11.025k, 16k, 22.05k, 32k, 44.1k, 48k, 96k, 192k) convert exactly.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch
import torchaudio
from scipy.signal import resample_poly

from mmops.config import AudioFeatures
from mmops.features.media import open_audio, read_mono
from mmops.models.windows import MEL_FLOOR, mel_frames

MAX_RATIO_TERM = 1_000  # bound on up and down of the resampling ratio (filter taps ~ 20x this)


def rate_ratio(rate: int, target: int) -> tuple[int, int]:
    """(up, down), both <= MAX_RATIO_TERM, with up / down the closest such ratio to target / rate."""
    exact = Fraction(target, rate)
    if exact <= 1:
        near = exact.limit_denominator(MAX_RATIO_TERM)
    else:
        near = 1 / (1 / exact).limit_denominator(MAX_RATIO_TERM)
    return near.numerator, near.denominator


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Mono float32 `wave` at `rate` -> `target` Hz (bounded cost: see the module docstring)."""
    up, down = rate_ratio(rate, target)
    if up == down:
        return wave
    return resample_poly(wave, up, down).astype(np.float32, copy=False)


def decode_mono(data: bytes, sample_rate: int, max_seconds: float) -> torch.Tensor:
    """Audio file bytes -> mono float32 waveform at `sample_rate`, at most `max_seconds` long;
    the header is checked first (`AudioRefused`) and only the frames needed are decoded."""
    with open_audio(data) as f:
        rate = f.samplerate
        mono = read_mono(f, math.ceil(max_seconds * rate))
    return torch.from_numpy(resample(mono, rate, sample_rate)[: int(max_seconds * sample_rate)])


class Waveform:
    """Waveform bytes -> mono waveform at the configured rate, cut to `clip_seconds()` (not padded:
    the extractor pads a batch with zeros and keeps each length)."""

    def __init__(self, cfg: AudioFeatures) -> None:
        self.cfg = cfg
        self.seconds = cfg.clip_seconds()
        self.n_samples = int(self.seconds * cfg.sample_rate)

    def __call__(self, data: bytes) -> torch.Tensor:
        return decode_mono(data, self.cfg.sample_rate, self.seconds).clone()


class LogMel:
    """Waveform bytes -> {"mel": (1, n_mels, frames), "frames": ()}: the log-mel of the whole clip up
    to `clip_seconds()`, zero-padded to the clip's frame count, and how many frames hold signal."""

    def __init__(self, cfg: AudioFeatures) -> None:
        self.cfg = cfg
        self.waveform = Waveform(cfg)
        self.n_samples = self.waveform.n_samples
        self.frames = mel_frames(cfg, cfg.clip_seconds())
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels
        )

    def __call__(self, data: bytes) -> dict[str, torch.Tensor]:
        wave = self.waveform(data)
        valid = min(wave.numel() // self.cfg.hop_length + 1, self.frames)
        wave = torch.nn.functional.pad(wave, (0, self.n_samples - wave.numel()))
        with torch.no_grad():
            spec = self.mel(wave)
        return {"mel": torch.log(spec + MEL_FLOOR).unsqueeze(0), "frames": torch.tensor(valid)}
