"""Cheap per-modality summary features of one raw input, for the prediction log and drift checks.

Only statistics leave this module, never the text or the media. Decoding is bounded like serving's
(`open_image` refuses by pixel count from the header, `open_audio` by rate and channels): an image
is statistically summarised from a thumbnail of at most `THUMBNAIL` px a side (a JPEG decodes at a
reduced DCT scale), audio from at most its first `AUDIO_SECONDS` seconds, downmixed to mono (the spectral centroid
from a fixed number of frames of it).

Columns (all present for every row, NaN where the modality is missing or does not decode):
    text.present, text.chars, text.words
    image.present, image.width, image.height (original px), image.brightness (mean luma, 0..1),
        image.colourfulness (Hasler & Süsstrunk 2003, on the 0..255 scale: 0 for grey)
    audio.present, audio.duration_s (whole clip, from the header), audio.sample_rate (Hz),
        audio.rms (of the mono signal, full scale 1), audio.centroid_hz (spectral centroid)
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mmops.config import MODALITIES, Modality
from mmops.features.media import open_audio, open_image, read_mono, to_mode

THUMBNAIL = 64  # px, longest side the image statistics are computed on
AUDIO_SECONDS = 5.0  # decoded for rms and centroid; the duration is the header's
CENTROID_FRAME, CENTROID_FRAMES = 1024, 4  # samples per spectrum frame, frames averaged

MODALITY_COLUMNS: dict[Modality, tuple[str, ...]] = {
    "text": ("text.present", "text.chars", "text.words"),
    "image": ("image.present", "image.width", "image.height", "image.brightness", "image.colourfulness"),
    "audio": ("audio.present", "audio.duration_s", "audio.sample_rate", "audio.rms", "audio.centroid_hz"),
}
SUMMARY_COLUMNS: tuple[str, ...] = tuple(c for m in MODALITIES for c in MODALITY_COLUMNS[m])

NAN = float("nan")


def _media_bytes(value: Any) -> bytes | None:
    """Bytes as served, or a file path as `mmops predict` passes them; None or empty: missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value) or None
    if isinstance(value, (str, os.PathLike)) and str(value):
        try:
            return Path(value).read_bytes()
        except OSError:
            return b""  # present but unreadable: unknown statistics
    return None if isinstance(value, str) else b""


def text_summary(text: str | None) -> dict[str, float]:
    if not isinstance(text, str) or not text.strip():
        return {"text.present": 0.0, "text.chars": NAN, "text.words": NAN}
    return {"text.present": 1.0, "text.chars": float(len(text)), "text.words": float(len(text.split()))}


LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as PIL's "L"


def brightness_colourfulness(rgb: np.ndarray) -> tuple[float, float]:
    """Mean luma (0..1) and Hasler & Süsstrunk's colourfulness M (0..255 scale) of (..., 3) pixels."""
    flat = rgb.reshape(-1, 3).astype(np.float64, copy=False)
    r_mean, g_mean, b_mean = means = flat.mean(axis=0)
    rg, yb = flat[:, 0] - flat[:, 1], 0.5 * (flat[:, 0] + flat[:, 1]) - flat[:, 2]
    colour = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(r_mean - g_mean, 0.5 * (r_mean + g_mean) - b_mean)
    return float(means @ LUMA / 255.0), float(colour)


def image_summary(data: bytes | None) -> dict[str, float]:
    out = dict.fromkeys(MODALITY_COLUMNS["image"], NAN)
    if data is None:
        out["image.present"] = 0.0
        return out
    out["image.present"] = 1.0
    try:
        with open_image(data) as img:
            out["image.width"], out["image.height"] = map(float, img.size)
            if img.format == "JPEG":
                img.draft("RGB", (THUMBNAIL, THUMBNAIL))
            img.thumbnail((THUMBNAIL, THUMBNAIL))
            rgb = np.asarray(to_mode(img, "RGB"))
    except Exception:  # an undecodable image is present, with unknown statistics
        return out
    out["image.brightness"], out["image.colourfulness"] = brightness_colourfulness(rgb)
    return out


def spectral_centroid(mono: np.ndarray, rate: int) -> float:
    """Magnitude-weighted mean frequency of the average spectrum of up to `CENTROID_FRAMES` Hann-windowed
    frames of `CENTROID_FRAME` samples spread evenly over the signal (constant cost); NaN for silence."""
    n = CENTROID_FRAME
    if len(mono) <= n:
        frames = mono[None, :]
    else:
        starts = np.linspace(0, len(mono) - n, min(CENTROID_FRAMES, len(mono) // n)).astype(np.int64)
        frames = mono[starts[:, None] + np.arange(n)]
    window, freqs = _spectrum_axes(frames.shape[1], rate)
    magnitude = np.abs(np.fft.rfft(frames * window, axis=1)).mean(axis=0)
    total = magnitude.sum()
    if not total > 0:
        return NAN
    return float(freqs @ magnitude / total)


@functools.lru_cache(maxsize=64)
def _spectrum_axes(n: int, rate: int) -> tuple[np.ndarray, np.ndarray]:
    return np.hanning(n), np.fft.rfftfreq(n, 1.0 / rate)


def audio_summary(data: bytes | None) -> dict[str, float]:
    out = dict.fromkeys(MODALITY_COLUMNS["audio"], NAN)
    if data is None:
        out["audio.present"] = 0.0
        return out
    out["audio.present"] = 1.0
    try:
        with open_audio(data) as f:
            rate, frames = f.samplerate, f.frames
            mono = read_mono(f, math.ceil(AUDIO_SECONDS * rate)).astype(np.float64)
    except Exception:  # undecodable audio is present, with unknown statistics
        return out
    out["audio.sample_rate"] = float(rate)
    out["audio.duration_s"] = (frames if frames > 0 else len(mono)) / rate
    if len(mono):
        out["audio.rms"] = float(np.sqrt(np.mean(mono * mono)))
        out["audio.centroid_hz"] = spectral_centroid(mono, rate)
    return out


def summarize(row: Mapping[str, Any]) -> dict[str, float]:
    """{"text": str, "image": bytes|path|None, "audio": bytes|path|None} -> every SUMMARY_COLUMNS value."""
    return {
        **text_summary(row.get("text")),
        **image_summary(_media_bytes(row.get("image"))),
        **audio_summary(_media_bytes(row.get("audio"))),
    }
