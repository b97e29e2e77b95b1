"""Images of any size and mode: RGB or grey, pad or centre-crop, per-channel normalisation, bounded decode."""

from __future__ import annotations

import io
import struct
import time

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image
from PIL.JpegImagePlugin import JpegImageFile

from datagen.hostile import photo_with_gps, png_header
from mmops.config import ImageFeatures
from mmops.features.image import ImageTransform, strip_exif

RED, BLUE, GREEN = (220, 30, 40), (20, 40, 200), (30, 180, 60)


def _encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _striped(width: int = 60, height: int = 20) -> Image.Image:
    """Blue | red | blue thirds, left to right."""
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:] = BLUE
    pixels[:, width // 3 : 2 * width // 3] = RED
    return Image.fromarray(pixels, "RGB")


def _rgb(size=16, **kw) -> ImageFeatures:
    return ImageFeatures(size=size, mode="rgb", mean=0.0, std=1.0, **kw)


def _close(pixel: torch.Tensor, colour: tuple[int, int, int], tol: float = 0.03) -> bool:
    return torch.allclose(pixel, torch.tensor(colour, dtype=torch.float32) / 255, atol=tol)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("size", [(37, 23), (23, 37), (301, 97)])
def test_rgb_of_odd_sizes_gives_channels_by_size(fmt, size):
    data = _encode(Image.new("RGB", size, GREEN), fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    for fit in ("pad", "crop"):
        x = ImageTransform(_rgb(24, fit=fit))(data)
        assert x.shape == (3, 24, 24) and x.dtype == torch.float32
        assert _close(x[:, 12, 12], GREEN)
    grey = ImageTransform(ImageFeatures(size=24, mode="grey"))(data)
    assert grey.shape == (1, 24, 24)


def test_crop_keeps_the_centre_and_pad_keeps_everything():
    data = _encode(_striped())
    crop = ImageTransform(_rgb(20, fit="crop"))(data)
    assert all(_close(crop[:, i, j], RED) for i in (0, 10, 19) for j in (1, 10, 18))  # the red centre fills it
    pad = ImageTransform(_rgb(30, fit="pad"))(data)
    middle = pad[:, 15]
    assert _close(middle[:, 2], BLUE) and _close(middle[:, 15], RED) and _close(middle[:, 27], BLUE)
    edge_colour = (3 * np.array(BLUE) + np.array(RED)) / 4  # the padding is the image's mean edge colour
    assert torch.allclose(pad[:, 0, 15], torch.tensor(edge_colour / 255, dtype=torch.float32), atol=0.05)
    assert torch.equal(pad[:, 0], pad[:, 1])  # rows 0-9 are padding (60x20 -> 30x10, centred)


def test_per_channel_normalisation():
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    x = ImageTransform(ImageFeatures(size=8, mode="rgb", mean=mean, std=std))(_encode(Image.new("RGB", (13, 9), RED)))
    want = (torch.tensor(RED) / 255 - torch.tensor(mean)) / torch.tensor(std)
    assert torch.allclose(x.mean(dim=(1, 2)), want, atol=1e-5)
    grey = ImageTransform(ImageFeatures(size=8, mode="grey", mean=mean, std=std))  # RGB constants on grey: averaged
    assert torch.allclose(grey.mean.flatten(), torch.tensor([sum(mean) / 3]))
    with pytest.raises(ValueError, match="one value or 3"):
        ImageTransform(ImageFeatures(size=8, mode="rgb", mean=[0.5, 0.5]))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "CMYK", "I;16", "1"])
def test_any_pil_mode_converts_cleanly(mode):
    base = Image.new("RGB", (21, 13), RED)
    img = base.convert(mode) if mode not in ("RGBA", "LA", "I;16") else None
    if mode == "RGBA":
        img = Image.new("RGBA", (21, 13), RED + (255,))
        img.putpixel((0, 0), (0, 0, 0, 0))  # transparent: composited on white, not black
    elif mode == "LA":
        img = Image.new("LA", (21, 13), (90, 0))  # fully transparent grey -> white
    elif mode == "I;16":
        img = Image.fromarray(np.full((13, 21), 40000, np.uint16))
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    data = _encode(img, fmt)
    rgb = ImageTransform(_rgb(16, fit="crop"))(data)
    grey = ImageTransform(ImageFeatures(size=16, mode="grey", fit="crop", mean=0.0, std=1.0))(data)
    assert rgb.shape == (3, 16, 16) and grey.shape == (1, 16, 16)
    assert rgb.min() >= 0 and rgb.max() <= 1 and torch.isfinite(grey).all()
    if mode == "LA":
        assert torch.allclose(grey, torch.ones_like(grey))
    if mode == "I;16":
        assert torch.allclose(grey, torch.full_like(grey, (40000 >> 8) / 255))
    if mode in ("RGBA", "P", "CMYK"):
        assert _close(rgb[:, 8, 8], RED, tol=0.06)


def test_grey_square_demo_images_are_unchanged():
    """The demo's 32 px grey PNGs at size 16: exactly the previous convert("L") -> resize -> normalise."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        pixels = rng.integers(0, 256, (32, 32), dtype=np.uint8)
        data = _encode(Image.fromarray(pixels, "L"))
        for fit in ("pad", "crop"):
            x = ImageTransform(ImageFeatures(size=16, mode="grey", fit=fit, mean=0.5, std=0.5))(data)
            with Image.open(io.BytesIO(data)) as img:
                old = np.asarray(img.convert("L").resize((16, 16), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
            assert torch.equal(x, ((torch.from_numpy(old) - 0.5) / 0.5).unsqueeze(0))


def test_unresolved_auto_falls_back_to_the_demo_shape():
    x = ImageTransform(ImageFeatures())(_encode(Image.new("RGB", (40, 30), RED)))
    assert x.shape == (1, 16, 16)


def test_pixel_limit_refuses_before_decoding(monkeypatch):
    data = _encode(Image.new("RGB", (300, 200), RED))
    with pytest.raises(ValueError, match="300x200"):
        ImageTransform(_rgb(16), max_pixels=300 * 200 - 1)(data)
    assert ImageTransform(_rgb(16), max_pixels=300 * 200)(data).shape == (3, 16, 16)
    # PNG headers of 9,000 and 20,000 px squares with no pixel data: refused from the header, fast
    started = time.perf_counter()
    with pytest.raises(ValueError, match="9000x9000"):
        ImageTransform(_rgb(16))(png_header(9000, 9000))
    with pytest.raises(ValueError, match="3600000000 pixels"):  # above PIL's own bomb limit too
        ImageTransform(_rgb(16))(png_header(60000, 60000))
    assert time.perf_counter() - started < 1.0


def test_large_jpeg_decodes_at_reduced_scale(monkeypatch):
    drafts = []
    original = JpegImageFile.draft

    def spy(self, mode, size):
        out = original(self, mode, size)
        drafts.append((mode, size, self.size))
        return out

    monkeypatch.setattr(JpegImageFile, "draft", spy)
    photo = _encode(_striped(2400, 1800), "JPEG", quality=90)
    x = ImageTransform(_rgb(64, fit="crop"))(photo)
    (mode, requested, decoded), = drafts
    assert mode == "RGB" and decoded[0] < 2400 and min(decoded) >= 64  # DCT-scaled, still covers the target
    full = ImageTransform(_rgb(64, fit="crop"), max_pixels=10**8)
    monkeypatch.setattr(JpegImageFile, "draft", lambda self, mode, size: None)  # no reduced decode
    assert torch.allclose(x, full(photo), atol=0.1)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_exif_never_reaches_features_and_strip_exif_removes_it(fmt):
    tagged, plain = photo_with_gps(fmt)
    assert b"SERIAL-0042" in tagged  # the fixture does carry metadata (and, but for TIFF, a GPS position)
    with Image.open(io.BytesIO(tagged)) as img:
        assert fmt == "TIFF" or img.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    transform = ImageTransform(_rgb(16))
    assert torch.equal(transform(tagged), transform(plain))  # only pixels are read

    stripped = strip_exif(tagged)
    assert b"SERIAL-0042" not in stripped and b"Exif" not in stripped
    with Image.open(io.BytesIO(stripped)) as img, Image.open(io.BytesIO(tagged)) as orig:
        assert not img.getexif() and "xmp" not in img.info
        assert np.array_equal(np.asarray(img.convert("RGB")), np.asarray(orig.convert("RGB")))  # lossless
    if fmt in ("JPEG", "PNG"):
        assert stripped == plain  # byte-level: exactly the file written without EXIF
    assert strip_exif(stripped) == stripped


def test_strip_exif_refuses_malformed_and_huge_files():
    jpeg, _ = photo_with_gps("JPEG")
    with pytest.raises(ValueError, match="well-formed JPEG"):
        strip_exif(jpeg[:2] + b"\x00" + jpeg[3:])
    with pytest.raises(ValueError, match="refused before decoding"):
        strip_exif(_tiff_header(60000))


def _tiff_header(side: int) -> bytes:
    """A TIFF that declares side x side grey pixels and holds none."""
    entries = [(256, 4, side), (257, 4, side), (258, 3, 8), (262, 3, 1), (273, 4, 8), (279, 4, 0)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", t, k, 1, v) for t, k, v in entries)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00\x00\x00\x00"
