"""Summary features of raw inputs, checked against numpy on generated media unlike the demo:
colour images of odd sizes and modes, stereo 44.1 kHz audio longer than the decode bound, long
texts, missing modalities, hostile headers."""

from __future__ import annotations

import io
import math
import struct
import zlib

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from mmops.monitor.summary import AUDIO_SECONDS, MODALITY_COLUMNS, SUMMARY_COLUMNS, THUMBNAIL, summarize


def _png(pixels: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, format="PNG")
    return buf.getvalue()


def _wav(samples: np.ndarray, rate: int, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt)
    return buf.getvalue()


def hasler_susstrunk(rgb: np.ndarray) -> float:
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return math.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * math.sqrt(rg.mean() ** 2 + yb.mean() ** 2)


def test_columns_are_fixed_and_missing_modalities_are_nan():
    assert SUMMARY_COLUMNS == tuple(c for m in ("text", "image", "audio") for c in MODALITY_COLUMNS[m])
    out = summarize({"text": "  ", "image": None, "audio": b""})
    assert tuple(out) == SUMMARY_COLUMNS
    for modality, columns in MODALITY_COLUMNS.items():
        assert out[f"{modality}.present"] == 0.0
        assert all(math.isnan(out[c]) for c in columns if not c.endswith(".present"))


def test_long_text_counts_characters_and_words():
    rng = np.random.default_rng(3)
    alphabet = "abcdéfgh✓"
    words = [alphabet[: int(k)] * 2 for k in rng.integers(1, len(alphabet) + 1, size=20_000)]
    text = " \n\t".join(words)
    out = summarize({"text": text})
    assert out["text.present"] == 1.0
    assert out["text.chars"] == len(text) and out["text.words"] == 20_000


def test_small_colour_image_matches_numpy():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)  # below the thumbnail: exact
    pixels[..., 0] //= 3  # a colour cast, so colourfulness is not the noise floor alone
    out = summarize({"text": "", "image": _png(pixels), "audio": None})
    assert (out["image.present"], out["image.width"], out["image.height"]) == (1.0, 53.0, 37.0)
    luma = pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert out["image.brightness"] == pytest.approx(luma.mean() / 255.0, rel=1e-9)
    assert out["image.colourfulness"] == pytest.approx(hasler_susstrunk(pixels), rel=1e-9)
    assert out["text.present"] == 0.0 and out["audio.present"] == 0.0


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_large_image_is_summarised_from_a_thumbnail(fmt):
    h, w = 731, 1209  # odd sizes, far above the thumbnail
    y, x = np.mgrid[0:h, 0:w]
    pixels = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 60)], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, quality=95)
    out = summarize({"image": buf.getvalue()})
    assert (out["image.width"], out["image.height"]) == (w, h)  # the original size, from the header
    luma = pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert out["image.brightness"] == pytest.approx(luma.mean() / 255.0, abs=0.01)
    assert out["image.colourfulness"] == pytest.approx(hasler_susstrunk(pixels), rel=0.03)
    assert THUMBNAIL < min(h, w)


def test_flat_colours_and_grey_modes():
    red = np.zeros((20, 30, 3), np.uint8)
    red[..., 0] = 255
    out = summarize({"image": _png(red)})
    assert out["image.colourfulness"] == pytest.approx(0.3 * math.hypot(255, 127.5))
    grey = np.full((9, 11), 200, np.uint8)
    out = summarize({"image": _png(grey, "L")})
    assert out["image.colourfulness"] == 0.0 and out["image.brightness"] == pytest.approx(200 / 255)
    rgba = np.zeros((8, 8, 4), np.uint8)  # fully transparent: composited on white, as in training
    out = summarize({"image": _png(rgba, "RGBA")})
    assert out["image.brightness"] == pytest.approx(1.0)


def test_stereo_44k_audio_bounded_decode_matches_numpy():
    rate, seconds = 44_100, AUDIO_SECONDS + 3
    t = np.arange(int(rate * seconds)) / rate
    amplitude = np.where(t < AUDIO_SECONDS + 1, 0.4, 0.95)  # louder after the decoded part
    left = amplitude * np.sin(2 * np.pi * 1000 * t)
    right = amplitude * np.sin(2 * np.pi * 3000 * t)
    data = _wav(np.stack([left, right], axis=1).astype(np.float32), rate, "FLAC")
    out = summarize({"audio": data})
    assert out["audio.present"] == 1.0 and out["audio.sample_rate"] == rate
    assert out["audio.duration_s"] == pytest.approx(seconds, abs=1 / rate)  # the whole clip, from the header
    mono = ((left + right) / 2)[: int(AUDIO_SECONDS * rate)]
    assert out["audio.rms"] == pytest.approx(np.sqrt(np.mean(mono**2)), rel=1e-3)  # only the bounded part
    assert out["audio.centroid_hz"] == pytest.approx(2000, rel=0.03)  # two equal tones: their mean


def test_short_mono_tone_centroid_and_silence():
    rate = 8000
    tone = 0.25 * np.sin(2 * np.pi * 440 * np.arange(600) / rate)  # shorter than one spectrum frame
    out = summarize({"audio": _wav(tone.astype(np.float32), rate)})
    assert out["audio.centroid_hz"] == pytest.approx(440, rel=0.05)
    assert out["audio.rms"] == pytest.approx(0.25 / math.sqrt(2), rel=0.02)
    silent = summarize({"audio": _wav(np.zeros(1000, np.float32), rate)})
    assert silent["audio.rms"] == 0.0 and math.isnan(silent["audio.centroid_hz"])


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_hostile_or_broken_media_are_present_with_unknown_statistics():
    bomb = _png_header(60_000, 60_000)  # 3.6 GP from the header: refused before any pixel decodes
    out = summarize({"image": bomb, "audio": b"RIFF\x00\x00not audio"})
    assert out["image.present"] == 1.0 and out["audio.present"] == 1.0
    for column in ("image.width", "image.brightness", "audio.duration_s", "audio.rms"):
        assert math.isnan(out[column])


def test_paths_summarise_like_bytes(tmp_path):
    rng = np.random.default_rng(1)
    image, audio = _png(rng.integers(0, 256, (17, 29, 3), dtype=np.uint8)), _wav(
        rng.normal(0, 0.1, 3000).astype(np.float32), 22_050)
    (tmp_path / "a.png").write_bytes(image)
    (tmp_path / "a.wav").write_bytes(audio)
    by_path = summarize({"text": "x", "image": str(tmp_path / "a.png"), "audio": tmp_path / "a.wav"})
    by_bytes = summarize({"text": "x", "image": image, "audio": audio})
    assert by_path == by_bytes
    gone = summarize({"image": str(tmp_path / "missing.png")})
    assert gone["image.present"] == 1.0 and math.isnan(gone["image.brightness"])
