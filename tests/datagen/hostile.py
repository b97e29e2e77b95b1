"""Small hostile inputs: each costs a few kB to send and would cost seconds or gigabytes to decode
unbounded (odd-rate and many-channel audio, huge-dimension images, long texts, deep JSON)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import soundfile as sf
from PIL import ExifTags, Image


def wav(rate: int, frames: int, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV of `frames` zero frames at `rate` Hz (any rate, even ones no encoder writes)."""
    data = b"\x00\x00" * frames * channels
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data"
            + struct.pack("<I", len(data)) + data)


def flac(rate: int, seconds: float, channels: int) -> bytes:
    """FLAC silence: a few kB that decode to `rate * seconds * channels` samples."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros((int(rate * seconds), channels), np.int16), rate, format="FLAC")
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` RGB pixels and holds one compressed row."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    head = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + head + chunk(b"IDAT", zlib.compress(b"\x00" * (1 + 3 * width))) + chunk(b"IEND", b"")


def long_texts(chars: int = 500_000) -> dict[str, str]:
    """Texts of `chars` characters that make a naive e-mail regex backtrack."""
    return {"bangs": "!" * chars, "at_signs": "a@" * (chars // 2), "dotted": ("a." * (chars // 2))}


def nested_json(depth: int) -> bytes:
    """`{"instances": [[[...]]]}` nested `depth` arrays deep."""
    return b'{"instances":' + b"[" * depth + b"]" * depth + b"}"


def photo_with_gps(fmt: str = "JPEG", size: tuple[int, int] = (48, 32)) -> tuple[bytes, bytes]:
    """(the photo with EXIF GPS position and camera serial, the same pixels encoded without EXIF)."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Camera Co"
    exif[ExifTags.Base.BodySerialNumber] = "SERIAL-0042"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef], gps[ExifTags.GPS.GPSLatitude] = "N", (52.0, 31.0, 12.0)
    gps[ExifTags.GPS.GPSLongitudeRef], gps[ExifTags.GPS.GPSLongitude] = "E", (13.0, 24.0, 36.0)
    kw = {"quality": 90} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    tagged, plain = io.BytesIO(), io.BytesIO()
    img.save(tagged, format=fmt, exif=exif, **kw)
    img.save(plain, format=fmt, **kw)
    return tagged.getvalue(), plain.getvalue()


# Texts that make a backtracking PII scanner quadratic (the old e-mail pattern took ~1 s on
# "!" * 8000): family -> n -> about n characters. Used by tests/data/test_pii.py and bench/bench_pii.py.
PII_ADVERSARIAL = {
    "atext run": lambda n: "!" * n,
    "at signs": lambda n: "a@" * (n // 2),
    "dotted local part": lambda n: "a." * (n // 2) + "@",
    "dotted domain": lambda n: "x@" + "a." * (n // 2),
    "addresses": lambda n: "x@y.io " * (n // 7),
    "digits": lambda n: "1" * n,
    "digit groups": lambda n: "1 " * (n // 2),
    "dotted digits": lambda n: "1." * (n // 2),
    "plus and parens": lambda n: "+1 (2) " * (n // 7),
    "iban prefixes": lambda n: "GB82 WEST " * (n // 10),
    "card groups": lambda n: "4111 " * (n // 5),
    "colons": lambda n: "1:a::" * (n // 5),
}
