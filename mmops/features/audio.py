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

import io
import math
from contextlib import contextmanager
from fractions import Fraction
from typing import Iterator

import numpy as np
import soundfile as sf
import torch
import torchaudio
from scipy.signal import resample_poly

from mmops.config import AudioFeatures
from mmops.models.windows import MEL_FLOOR, mel_frames

SAMPLE_RATES = (1_000, 192_000)  # Hz accepted from a file's header
MAX_CHANNELS = 8
MAX_RATIO_TERM = 1_000  # bound on up and down of the resampling ratio (filter taps ~ 20x this)
BLOCK_FRAMES = 65_536  # frames decoded (all channels) at a time


class AudioRefused(ValueError):
    """An audio file refused from its header, before any sample is decoded."""


def header_problem(rate: int, channels: int, max_channels: int = MAX_CHANNELS) -> str | None:
    """Why a file with this header is refused before decoding, or None."""
    lo, hi = SAMPLE_RATES
    if not lo <= rate <= hi:
        return f"sample rate {rate} Hz is outside {lo}..{hi} Hz"
    if not 1 <= channels <= max_channels:
        return f"{channels} channels, above the {max_channels}-channel limit"
    return None


@contextmanager
def open_audio(data: bytes, max_channels: int = MAX_CHANNELS) -> Iterator[sf.SoundFile]:
    """The file's header parsed and checked (`header_problem`: `AudioRefused`), nothing decoded yet."""
    with sf.SoundFile(io.BytesIO(data)) as f:
        problem = header_problem(f.samplerate, f.channels, max_channels)
        if problem:
            raise AudioRefused(f"audio refused before decoding: {problem}")
        yield f


def read_mono(f: sf.SoundFile, frames: int) -> np.ndarray:
    """At most `frames` frames from `f`'s position, downmixed to mono float32 block by block."""
    if f.frames > 0:
        frames = min(frames, f.frames - f.tell())
    out = np.empty(max(frames, 0), np.float32)
    block = np.empty((min(BLOCK_FRAMES, len(out)), f.channels), np.float32)
    n = 0
    while n < len(out):
        k = min(len(block), len(out) - n)
        got = f.read(frames=k, out=block[:k])
        if len(got) == 0:
            break
        out[n : n + len(got)] = got[:, 0] if f.channels == 1 else got.mean(axis=1, dtype=np.float32)
        n += len(got)
    return out[:n]


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
