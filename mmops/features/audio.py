"""Audio: decode with soundfile, mono, resample; then a log-mel (torchaudio) or the raw waveform,
whichever the configured audio encoder takes (its config's `input_feature`)."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import torch
import torchaudio

from mmops.config import AudioFeatures


def decode_mono(data: bytes, sample_rate: int) -> torch.Tensor:
    """Audio file bytes -> mono float32 waveform at `sample_rate`."""
    wav, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    mono = torch.from_numpy(np.ascontiguousarray(wav.mean(axis=1)))
    if sr != sample_rate:
        mono = torchaudio.functional.resample(mono, sr, sample_rate)
    return mono


class Waveform:
    """Waveform bytes -> mono waveform at the configured rate, cut to `max_seconds` (not padded:
    the extractor pads a batch with zeros and keeps each length)."""

    def __init__(self, cfg: AudioFeatures) -> None:
        self.cfg = cfg
        self.n_samples = int(cfg.max_seconds * cfg.sample_rate)

    def __call__(self, data: bytes) -> torch.Tensor:
        return decode_mono(data, self.cfg.sample_rate)[: self.n_samples].clone()


class LogMel:
    """Waveform bytes -> fixed-size log-mel tensor of shape (1, n_mels, frames)."""

    def __init__(self, cfg: AudioFeatures) -> None:
        self.cfg = cfg
        self.n_samples = int(cfg.max_seconds * cfg.sample_rate)
        self.frames = self.n_samples // cfg.hop_length + 1
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels
        )

    def decode(self, data: bytes) -> torch.Tensor:
        return decode_mono(data, self.cfg.sample_rate)

    def __call__(self, data: bytes) -> torch.Tensor:
        wave = self.decode(data)[: self.n_samples]
        wave = torch.nn.functional.pad(wave, (0, self.n_samples - wave.numel()))
        with torch.no_grad():
            spec = self.mel(wave)
        return torch.log(spec + 1e-6).unsqueeze(0)
