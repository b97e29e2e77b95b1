"""Images: bounded decode with PIL, RGB or grey, aspect-preserving resize, pad or centre-crop, normalise."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from mmops.config import ImageFeatures

MAX_PIXELS = 40_000_000  # refused before decoding: a 40 MP photo is already far above any model input
BACKGROUND = (255, 255, 255)  # what transparent pixels are composited onto


def per_channel(values: float | list[float], channels: int) -> torch.Tensor:
    """A normalisation constant as a (C, 1, 1) tensor: one value for all channels, or one per channel
    (an RGB triple on a grey image is averaged: grey is R = G = B)."""
    v = [float(values)] if isinstance(values, (int, float)) else [float(x) for x in values]
    if len(v) == 3 and channels == 1:
        v = [sum(v) / 3]
    if len(v) not in (1, channels):
        raise ValueError(f"features.image mean/std {values}: give one value or {channels} (one per channel)")
    return torch.tensor(v * channels if len(v) == 1 else v, dtype=torch.float32).view(channels, 1, 1)


def _to_mode(img: Image.Image, mode: str) -> Image.Image:
    """RGB or L from any PIL mode: alpha composited on `BACKGROUND`, 16-bit grey scaled to 8 bits."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L"):
        img = Image.fromarray((np.asarray(img, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        flat = Image.new("RGBA", img.size, BACKGROUND + (255,))
        img = Image.alpha_composite(flat, img.convert("RGBA"))
    return img.convert(mode)


class ImageTransform:
    """Image bytes -> tensor (C, size, size), C = `cfg.channels`, normalised per channel.

    Aspect-preserving: `fit="pad"` scales the longer side to `size` and fills the rest with the
    image's edge colour; `fit="crop"` scales the shorter side to `size` and keeps the centre. A
    square image is only resized. Images above `max_pixels` are refused before decoding; a JPEG
    decodes at the smallest DCT scale that still covers the target (`draft`).
    """

    def __init__(self, cfg: ImageFeatures, max_pixels: int = MAX_PIXELS) -> None:
        self.cfg = cfg
        self.size = cfg.resolved_size()
        self.channels = cfg.channels
        self.mode = "RGB" if self.channels == 3 else "L"
        self.max_pixels = max_pixels
        self.mean = per_channel(cfg.mean, self.channels)
        self.std = per_channel(cfg.std, self.channels)

    def __call__(self, data: bytes) -> torch.Tensor:
        try:
            opened = Image.open(io.BytesIO(data))  # reads the header only
        except Image.DecompressionBombError as err:  # PIL's own limit, far above ours
            raise ValueError(f"image refused before decoding: {err}") from None
        with opened as img:
            width, height = img.size
            if width * height > self.max_pixels:
                raise ValueError(f"image of {width}x{height} px is above the {self.max_pixels:,} pixel limit")
            if img.format == "JPEG":
                img.draft(self.mode, self._scaled(width, height))
            pixels = self._fit(_to_mode(img, self.mode))
        x = torch.from_numpy(pixels).permute(2, 0, 1)
        return ((x - self.mean) / self.std).contiguous()

    def _scaled(self, width: int, height: int) -> tuple[int, int]:
        """The resized (width, height) before padding or cropping."""
        side = max(width, height) if self.cfg.fit == "pad" else min(width, height)
        scale = self.size / side
        return max(1, round(width * scale)), max(1, round(height * scale))

    def _fit(self, img: Image.Image) -> np.ndarray:
        """(size, size, C) float32 pixels in [0, 1]."""
        resized = img.resize(self._scaled(*img.size), Image.Resampling.BILINEAR)
        pixels = np.asarray(resized, dtype=np.float32).reshape(resized.height, resized.width, -1) / 255.0
        h, w, s = pixels.shape[0], pixels.shape[1], self.size
        if (h, w) == (s, s):
            return pixels
        if self.cfg.fit == "crop":
            top, left = (h - s) // 2, (w - s) // 2
            return pixels[top : top + s, left : left + s]
        edge = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        canvas = np.empty((s, s, pixels.shape[2]), np.float32)
        canvas[:] = edge.mean(axis=0)
        top, left = (s - h) // 2, (s - w) // 2
        canvas[top : top + h, left : left + w] = pixels
        return canvas
