"""Audio: decode with soundfile, mono, resample, log-mel with torchaudio."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import torch
import torchaudio

from mmops.config import AudioFeatures


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
        wav, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        mono = torch.from_numpy(np.ascontiguousarray(wav.mean(axis=1)))
        if sr != self.cfg.sample_rate:
            mono = torchaudio.functional.resample(mono, sr, self.cfg.sample_rate)
        return mono

    def __call__(self, data: bytes) -> torch.Tensor:
        wave = self.decode(data)[: self.n_samples]
        wave = torch.nn.functional.pad(wave, (0, self.n_samples - wave.numel()))
        with torch.no_grad():
            spec = self.mel(wave)
        return torch.log(spec + 1e-6).unsqueeze(0)
