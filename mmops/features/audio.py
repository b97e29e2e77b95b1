"""Audio: bounded decode with soundfile (WAV/FLAC/OGG/MP3), downmix, resample; then a log-mel
(torchaudio) or the raw waveform, whichever the configured audio encoder takes (its config's
`input_feature`).

Only the first `clip_seconds()` of a clip are read. Resampling is polyphase (scipy's
`resample_poly`): its cost grows with the signal, not with the reduced rate ratio, so any rate
pair is cheap (torchaudio's kernel for 16,001 -> 16,000 Hz alone is 16,000 x 16,001).
"""

from __future__ import annotations

import io
import math

import numpy as np
import soundfile as sf
import torch
import torchaudio
from scipy.signal import resample_poly

from mmops.config import AudioFeatures
from mmops.models.windows import MEL_FLOOR, mel_frames


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Mono float32 `wave` at `rate` -> `target` Hz."""
    if rate == target:
        return wave
    g = math.gcd(rate, target)
    return resample_poly(wave, target // g, rate // g).astype(np.float32, copy=False)


def decode_mono(data: bytes, sample_rate: int, max_seconds: float) -> torch.Tensor:
    """Audio file bytes -> mono float32 waveform at `sample_rate`, at most `max_seconds` long;
    only the frames needed are decoded."""
    with sf.SoundFile(io.BytesIO(data)) as f:
        rate = f.samplerate
        wav = f.read(frames=math.ceil(max_seconds * rate), dtype="float32", always_2d=True)
    mono = np.ascontiguousarray(wav.mean(axis=1, dtype=np.float32) if wav.shape[1] > 1 else wav[:, 0])
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
