"""Short product reviews with a photo and a voice note: a small sentiment dataset unlike the demo.

The demo is 16 px grey digits, 1.5 s of 16 kHz speech and ten digit classes. Here:

- labels: negative / neutral / positive (strings);
- text: a short review, 8..16 words: a neutral opening and closing around one sentiment phrase
  of the class, in plain English (a pretrained text encoder knows these words);
- image: RGB JPEG, 96 x 72 px (landscape, not square): a noisy grey-brown background and a few
  shapes whose hue is the class (reds, greens, blues);
- audio: 1.0..1.5 s mono WAV at 22.05 kHz: a tone whose pitch falls, stays or rises with the class,
  over light noise;
- about one row in eight misses one modality (an empty cell), never all;
- `modalities` chooses the columns: ("text", "image") writes no audio column and no audio at all.

No `split` column (the pipeline splits). Every row draws from generators seeded by (seed, row):
the same arguments write the same bytes.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw

CLASSES = ("negative", "neutral", "positive")
PHRASES = (
    ("it broke after one day", "a complete waste of money", "terrible quality and very disappointing"),
    ("it is okay, nothing special", "an average product that does the job", "exactly as described, no more"),
    ("I absolutely love it", "excellent quality, highly recommended", "works perfectly, great value"),
)
OPENINGS = ("Bought this blender last month and", "The parcel arrived on Tuesday;", "Ordered the lamp for my desk,",
            "Tried the kettle for a week:", "Got this as a gift and")
CLOSINGS = ("", "Delivery was on time.", "The box was plain.", "Used it twice so far.")
HUES = ((0.97, 1.03), (0.28, 0.40), (0.57, 0.67))  # reds, greens, blues (fractions of the wheel)
PITCH = ((900.0, 350.0), (600.0, 600.0), (350.0, 900.0))  # Hz at start and end: falling, flat, rising
IMAGE_SIZE = (96, 72)
SAMPLE_RATE = 22050
MISSING_FRACTION = 0.125


def _text(rng: np.random.Generator, k: int) -> str:
    parts = [OPENINGS[rng.integers(len(OPENINGS))], PHRASES[k][rng.integers(len(PHRASES[k]))] + ".",
             CLOSINGS[rng.integers(len(CLOSINGS))]]
    return " ".join(p for p in parts if p)


def _image(rng: np.random.Generator, k: int) -> Image.Image:
    import colorsys

    w, h = IMAGE_SIZE
    base = rng.uniform(90, 160) * np.array([1.0, 0.95, 0.85])
    arr = np.clip(base + rng.normal(0, 12, size=(h, w, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 5))):
        rgb = colorsys.hsv_to_rgb(rng.uniform(*HUES[k]) % 1.0, rng.uniform(0.6, 1.0), rng.uniform(0.5, 0.95))
        x0, y0 = int(rng.integers(0, w - 24)), int(rng.integers(0, h - 18))
        box = [x0, y0, x0 + int(rng.integers(16, 40)), y0 + int(rng.integers(12, 30))]
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=tuple(int(255 * c) for c in rgb))
    return img


def _audio(rng: np.random.Generator, k: int) -> np.ndarray:
    n = int(rng.uniform(1.0, 1.5) * SAMPLE_RATE)
    f0, f1 = (f * rng.uniform(0.9, 1.1) for f in PITCH[k])
    freq = np.geomspace(f0, f1, n)
    tone = 0.3 * np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE + rng.uniform(0, 2 * np.pi))
    return (tone + rng.normal(0, 0.02, n)).astype(np.float32)


def make_reviews(root: Path, *, n_per_class: int = 30, seed: int = 0,
                 modalities: tuple[str, ...] = ("text", "image", "audio")) -> Path:
    """Write `root/manifest.csv` (sample_id, label and the `modalities` columns) and its media; return root."""
    if not set(modalities) <= {"text", "image", "audio"} or not modalities:
        raise ValueError(f"modalities must be a non-empty subset of text, image, audio, got {modalities}")
    root = Path(root)
    for m in ("image", "audio"):
        if m in modalities:
            (root / m).mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng([seed, 0]).permutation(np.repeat(np.arange(len(CLASSES)), n_per_class))
    rows = []
    for i, k in enumerate(order.tolist()):
        sid = f"r{i:04d}"
        rng = np.random.default_rng([seed, i])
        missing = modalities[rng.integers(len(modalities))] if len(modalities) > 1 and rng.random() < MISSING_FRACTION else None
        row = {"sample_id": sid, "label": CLASSES[k]}
        for m in modalities:
            row[m] = ""
            if m == missing:
                continue
            if m == "text":
                row[m] = _text(rng, k)
            elif m == "image":
                row[m] = f"image/{sid}.jpg"
                _image(rng, k).save(root / row[m], format="JPEG", quality=90)
            else:
                row[m] = f"audio/{sid}.wav"
                sf.write(root / row[m], _audio(rng, k), SAMPLE_RATE, subtype="PCM_16")
        rows.append(row)
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["sample_id", "label", *modalities], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return root
