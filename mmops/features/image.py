"""Images: bounded decode with PIL, RGB or grey, aspect-preserving resize, pad or centre-crop, normalise;
`strip_exif` for wherever image bytes are kept.

Metadata never reaches the features: only pixels are read (no EXIF orientation is applied, in
training as in serving).
"""

from __future__ import annotations

import io
import struct

import numpy as np
import torch
from PIL import Image

from mmops.config import ImageFeatures
from mmops.features.media import MAX_PIXELS, open_image, to_mode

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_DROP = {0xE1, 0xED, 0xFE}  # APP1 (EXIF, XMP), APP13 (IPTC), COM
PNG_DROP = {b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"}
WEBP_DROP = {b"EXIF", b"XMP "}


def _strip_jpeg(data: bytes) -> bytes:
    """JPEG without APP1/APP13/COM segments; the compressed pixels are copied byte for byte."""
    out, pos = [data[:2]], 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError("not a well-formed JPEG: no marker where a segment starts")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data (and later tables)
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length field
            out.append(data[pos : pos + 2])
            pos += 2
            continue
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if end > len(data):
            raise ValueError("not a well-formed JPEG: a segment runs past the end")
        if marker not in JPEG_DROP:
            out.append(data[pos:end])
        pos = end
    out.append(data[pos:])
    return b"".join(out)


def _strip_chunks(data: bytes, start: int, drop: set[bytes], png: bool) -> tuple[list[bytes], bool]:
    """PNG (length, type, data, CRC) or RIFF (type, length, data, pad) chunks from `start`, without
    those whose type is in `drop`; and whether any was dropped."""
    kept, dropped, pos = [], False, start
    while pos + 8 <= len(data):
        if png:
            size, kind = struct.unpack(">I", data[pos : pos + 4])[0], data[pos + 4 : pos + 8]
            end = pos + 12 + size
        else:
            kind, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
            end = pos + 8 + size + (size & 1)
        if end > len(data) + (not png):  # a RIFF file may omit the last pad byte
            raise ValueError("not a well-formed image: a chunk runs past the end")
        if kind in drop:
            dropped = True
        else:
            kept.append(data[pos:end])
        pos = end
    return kept, dropped


def _strip_webp(data: bytes) -> bytes:
    chunks, dropped = _strip_chunks(data, 12, WEBP_DROP, png=False)
    if not dropped:
        return data
    chunks = [c[:8] + bytes([c[8] & ~0x0C]) + c[9:] if c[:4] == b"VP8X" else c for c in chunks]  # EXIF, XMP flags
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def strip_exif(data: bytes, max_pixels: int = MAX_PIXELS) -> bytes:
    """Image bytes without EXIF (GPS, camera serials), XMP, IPTC, comments or text chunks.

    JPEG, PNG and WebP are cleaned losslessly at the byte level (the pixels are untouched);
    BMP and GIF carry no EXIF and come back as given; any other format is re-encoded as PNG from
    its pixels (bounded by `max_pixels`). ValueError on a malformed file.
    """
    if data.startswith(b"\xff\xd8"):
        return _strip_jpeg(data)
    if data.startswith(PNG_SIGNATURE):
        return PNG_SIGNATURE + b"".join(_strip_chunks(data, 8, PNG_DROP, png=True)[0])
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _strip_webp(data)
    with open_image(data, max_pixels) as img:
        if img.format in ("BMP", "GIF"):
            return data
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()


def per_channel(values: float | list[float], channels: int) -> torch.Tensor:
    """A normalisation constant as a (C, 1, 1) tensor: one value for all channels, or one per channel
    (an RGB triple on a grey image is averaged: grey is R = G = B)."""
    v = [float(values)] if isinstance(values, (int, float)) else [float(x) for x in values]
    if len(v) == 3 and channels == 1:
        v = [sum(v) / 3]
    if len(v) not in (1, channels):
        raise ValueError(f"features.image mean/std {values}: give one value or {channels} (one per channel)")
    return torch.tensor(v * channels if len(v) == 1 else v, dtype=torch.float32).view(channels, 1, 1)


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
        with open_image(data, self.max_pixels) as img:
            width, height = img.size
            if img.format == "JPEG":
                img.draft(self.mode, self._scaled(width, height))
            pixels = self._fit(to_mode(img, self.mode))
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
