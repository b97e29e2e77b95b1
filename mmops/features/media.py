"""Bounded decoding of image and audio bytes, with no torch: shared by the feature transforms,
serving's input checks and the prediction log's summaries (which run in a light writer process).

An image is refused from its header by pixel count before any pixel is decoded; audio by sample
rate and channel count before any sample is, and is then read block by block, downmixed as it goes.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import soundfile as sf
from PIL import Image

MAX_PIXELS = 40_000_000  # refused before decoding: a 40 MP photo is already far above any model input
BACKGROUND = (255, 255, 255)  # what transparent pixels are composited onto

SAMPLE_RATES = (1_000, 192_000)  # Hz accepted from a file's header
MAX_CHANNELS = 8
BLOCK_FRAMES = 65_536  # frames decoded (all channels) at a time


class ImageRefused(ValueError):
    """An image refused from its header, before any pixel is decoded."""


def open_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The image with only its header read; `ImageRefused` when it has more than `max_pixels` pixels
    (`PIL.UnidentifiedImageError` when it is no image Pillow knows)."""
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:  # PIL's own limit, far above ours
        raise ImageRefused(f"image refused before decoding: {str(err).split(',')[0]}") from None
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise ImageRefused(f"image refused before decoding: {width}x{height} px is above the "
                         f"{max_pixels:,}-pixel limit")
    return img


def to_mode(img: Image.Image, mode: str) -> Image.Image:
    """RGB or L from any PIL mode: alpha composited on `BACKGROUND`, 16-bit grey scaled to 8 bits."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L"):
        img = Image.fromarray((np.asarray(img, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        flat = Image.new("RGBA", img.size, BACKGROUND + (255,))
        img = Image.alpha_composite(flat, img.convert("RGBA"))
    return img.convert(mode)


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
