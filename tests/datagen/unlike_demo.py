"""A small multimodal dataset that looks nothing like the built-in `avdigits` demo.

The demo is 16 px grey digits, 1.5 s of 16 kHz mono speech and 10 digit classes. This one is:

- images: RGB, width and height drawn independently in 64..320 px, PNG or JPEG; a few filled
  ellipses / rectangles / polygons on a low-saturation noisy background. The class is the HUE of
  the shapes (negative: reds, neutral: greens, positive: blues). Every colour is built with a
  prescribed ITU-R 601 luma (what `Image.convert("L")` computes), drawn from one distribution
  for all classes, and the background luma sequence is shared across classes: a grayscale
  pipeline sees no class signal.
- audio: 2..4 s clips in four containers (WAV 44.1 kHz stereo, FLAC 22.05 kHz mono,
  WAV 16 kHz mono, MP3 22.05 kHz mono; libsndfile >= 1.1 writes MP3). The class is a 0.6 s
  pitch glide (rising / flat / falling, 300..1200 Hz) that starts anywhere in the clip, after
  1.5 s in most clips, over light background noise everywhere; the tone is about as loud as the
  noise, so the loudness envelope does not give it away.
- text: 20..80 neutral filler words with one short class phrase inserted at a random position,
  often past word 40 (a text model truncated to a few words misses it).
- ~15 % of rows miss exactly one modality (an empty cell), never all.
- Each modality is informative only for some rows: independently per row and per modality, with
  probability `p_uninformative` (default 0.4) it carries no class information while looking the
  same kind of data. Image: the shapes' hues cycle through a random order of ALL the class hue
  families (luma drawn as usual), so the image mixes every class colour. Audio: the glide's
  direction is drawn uniformly, independently of the label (same timing, pitch range, energy).
  Text: the inserted phrase comes from NEUTRAL_PHRASES, shared by every class. A single modality
  then gets about (1 - p) + p / n_classes right (0.73 for 3 classes at p = 0.4), while all of them
  together leave only rows whose present modalities are all uninformative to chance (Bayes
  accuracy about 0.95 for 3 classes at p = 0.4); `informative_mask` gives the ground truth.

Variants: "full" (three modalities), "no_audio" (no `audio` column), "no_image" (no `image`
column), "empty_column" (an `audio` column whose cells are all empty).

No `split` column: the pipeline splits. Everything is drawn from per-sample generators seeded by
`(seed, row)`, JPEG quality is fixed and no format writes a timestamp, so two runs with the same
arguments write byte-identical files. The media content of a row does not depend on the variant;
an informative modality's content does not depend on `p_uninformative` (with
`p_uninformative=0` every modality of every row is informative).
"""

from __future__ import annotations

import colorsys
import csv
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw

VARIANTS = ("full", "no_audio", "no_image", "empty_column")
DEFAULT_CLASSES = ("negative", "neutral", "positive")

# Hue families (fractions of the colour wheel), one per class, cycled when there are more classes.
HUE_FAMILIES = ((0.95, 1.03), (0.27, 0.42), (0.56, 0.70), (0.10, 0.15), (0.78, 0.86))
# Luma of the shapes and of the background, 0..1 (the same distribution for every class).
SHAPE_LUMA = (0.38, 0.62)
BG_LUMA = (0.25, 0.75)
JPEG_QUALITY = 88
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])

# (container, subtype, rate, channels, suffix): cycled by row, independent of the class.
AUDIO_FORMATS = (
    ("WAV", "PCM_16", 44100, 2, ".wav"),
    ("FLAC", "PCM_16", 22050, 1, ".flac"),
    ("WAV", "PCM_16", 16000, 1, ".wav"),
    ("MP3", "MPEG_LAYER_III", 22050, 1, ".mp3"),
)
GLIDE_S = 0.6
LATE_S = 1.5  # most glides start after this (a model that keeps the first 1.5 s misses them)
NOISE_RMS = 0.05
TONE_RMS = 0.06
# Glide direction per class index (cycled: with more than 3 classes audio alone cannot tell all apart).
GLIDES = ("falling", "flat", "rising")

FILLER = (
    "the a of and to in on at for with from by about over under after before between into "
    "through during without within along across behind beyond near this that these those it "
    "report table window morning evening river paper letter station garden street kitchen "
    "meeting schedule section chapter page note item list record system process method "
    "document sample value figure number colour shape sound voice field line point corner "
    "was is were are has had have will would could should may might then also again later "
    "today yesterday tomorrow north south east west first second third next last other"
).split()
# Class phrases, cycled by class; no word of a phrase is a filler word or in another class.
PHRASES = (
    ("utterly disappointing", "a complete letdown", "deeply frustrating"),
    ("perfectly ordinary", "fairly standard", "quite unremarkable"),
    ("absolutely wonderful", "truly delightful", "simply brilliant"),
    ("rather puzzling", "somewhat confusing", "oddly baffling"),
    ("mildly amusing", "faintly funny", "gently comic"),
)
# Phrases of an uninformative text, shared by every class; no word is a filler word or in PHRASES.
NEUTRAL_PHRASES = ("genuinely ambivalent", "mixed impressions overall", "no strong opinion")
MISSING_FRACTION = 0.15
P_UNINFORMATIVE = 0.4
MODALITIES = ("text", "image", "audio")


def _rgb_with_luma(hue: float, sat: float, luma: float) -> tuple[int, int, int]:
    """An RGB colour of the given hue whose 601 luma is `luma` (0..1): darken or mix with white."""
    c = np.array(colorsys.hsv_to_rgb(hue % 1.0, sat, 1.0))
    y = float(c @ LUMA_WEIGHTS)
    if luma <= y:
        c = c * (luma / y)
    else:
        c = c + (luma - y) / (1.0 - y) * (1.0 - c)
    return tuple(int(v) for v in np.clip(np.round(c * 255.0), 0, 255))


def _image(rng: np.random.Generator, families: list[tuple[float, float]], bg_luma: float) -> Image.Image:
    """Shape k takes its hue from `families[k % len(families)]`."""
    w, h = (int(v) for v in rng.integers(64, 321, size=2))
    bg = np.array(_rgb_with_luma(rng.random(), rng.uniform(0.0, 0.12), bg_luma), dtype=np.float32)
    # A smooth gradient plus grain, so the background is not flat; luma mean stays bg_luma.
    gx = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :, None]
    gy = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None, None]
    a, b = rng.uniform(-12.0, 12.0, size=2)
    grain = rng.normal(0.0, 6.0, size=(h, w, 1)).astype(np.float32)
    arr = np.clip(bg + a * gx + b * gy + grain, 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    draw = ImageDraw.Draw(img)
    for k in range(int(rng.integers(3, 7))):
        lo, hi = families[k % len(families)]
        colour = _rgb_with_luma(rng.uniform(lo, hi), rng.uniform(0.55, 1.0), rng.uniform(*SHAPE_LUMA))
        sw, sh = rng.uniform(0.25, 0.55) * w, rng.uniform(0.25, 0.55) * h
        x0, y0 = rng.uniform(-0.1 * w, w - 0.9 * sw), rng.uniform(-0.1 * h, h - 0.9 * sh)
        box = [int(x0), int(y0), int(x0 + sw), int(y0 + sh)]
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse(box, fill=colour)
        elif kind == 1:
            draw.rectangle(box, fill=colour)
        else:
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            angles = np.sort(rng.uniform(0, 2 * np.pi, size=int(rng.integers(3, 6))))
            pts = [(cx + sw / 2 * np.cos(t), cy + sh / 2 * np.sin(t)) for t in angles]
            draw.polygon([(int(x), int(y)) for x, y in pts], fill=colour)
    return img


def _glide_hz(rng: np.random.Generator, direction: str) -> tuple[float, float]:
    if direction == "rising":
        return rng.uniform(300.0, 450.0), rng.uniform(800.0, 1200.0)
    if direction == "falling":
        return rng.uniform(800.0, 1200.0), rng.uniform(300.0, 450.0)
    f = rng.uniform(400.0, 1000.0)
    return f, f


def _audio_plan(rng: np.random.Generator, direction: str) -> tuple[float, float, float, float]:
    """(duration, glide start, start Hz, end Hz): drawn first from the row's audio generator."""
    duration = rng.uniform(2.0, 4.0)
    late = rng.random() < 0.9 and duration >= LATE_S + GLIDE_S + 0.1
    lo = LATE_S if late else 0.05
    start = rng.uniform(lo, duration - GLIDE_S - 0.05)
    f0, f1 = _glide_hz(rng, direction)
    return duration, start, f0, f1


def _audio(rng: np.random.Generator, direction: str, rate: int, channels: int) -> np.ndarray:
    """A clip, (frames, channels) float32."""
    duration, start, f0, f1 = _audio_plan(rng, direction)
    n = int(round(duration * rate))
    # Light noise everywhere: white noise through a short exponential low-pass, at NOISE_RMS.
    noise = np.convolve(rng.standard_normal(n), 0.6 ** np.arange(32))[:n]
    noise *= NOISE_RMS / (noise.std() + 1e-12)
    m = int(round(GLIDE_S * rate))
    t = np.arange(m) / rate
    # Exponential (log-frequency) sweep from f0 to f1 over GLIDE_S.
    if abs(f1 / f0 - 1.0) < 1e-9:
        phase = 2 * np.pi * f0 * t
    else:
        beta = np.log(f1 / f0) / GLIDE_S
        phase = 2 * np.pi * f0 * np.expm1(beta * t) / beta
    env = np.clip(np.minimum(t, GLIDE_S - t) / 0.03, 0.0, 1.0)  # 30 ms fades
    tone = TONE_RMS * np.sqrt(2.0) * env * np.sin(phase + rng.uniform(0, 2 * np.pi))
    s = int(round(start * rate))
    out = noise
    out[s : s + m] += tone[: max(0, min(m, n - s))]
    if channels == 2:
        # Stereo: the same content at slightly different gains, plus decorrelated grain.
        extra = rng.standard_normal(n) * NOISE_RMS * 0.2
        out = np.stack([out * 0.95 + extra, out * 1.05 - extra], axis=1)
    else:
        out = out[:, None]
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def _text(rng: np.random.Generator, phrases: tuple[str, ...]) -> str:
    n = int(rng.integers(20, 81))
    words = [FILLER[i] for i in rng.integers(0, len(FILLER), size=n)]
    phrase = phrases[int(rng.integers(0, len(phrases)))]
    if n > 42 and rng.random() < 0.85:
        pos = int(rng.integers(40, n + 1))
    else:
        pos = int(rng.integers(0, n + 1))
    words[pos:pos] = phrase.split()
    return " ".join(words).capitalize() + "."


def make_dataset(
    root: Path,
    *,
    n_per_class: int = 40,
    classes=DEFAULT_CLASSES,
    variant: str = "full",
    seed: int = 0,
    p_uninformative: float = P_UNINFORMATIVE,
) -> Path:
    """Write `root/manifest.csv` (sample_id, label, text[, image][, audio]) and its media; return root.

    Row i's class is a seeded permutation of `n_per_class` rows per class; `glide_starts` gives
    where each row's glide starts and `informative_mask` which modalities of each row carry the
    class (the ground truth for tests).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    classes = tuple(str(c) for c in classes)
    if len(set(classes)) != len(classes) or not classes:
        raise ValueError(f"classes must be distinct and non-empty, got {classes}")
    if not 0.0 <= p_uninformative <= 1.0:
        raise ValueError(f"p_uninformative must be in [0, 1], got {p_uninformative!r}")
    root = Path(root)
    has_image = variant != "no_image"
    has_audio_col = variant != "no_audio"
    writes_audio = variant in ("full", "no_image")
    root.mkdir(parents=True, exist_ok=True)
    if has_image:
        (root / "images").mkdir(exist_ok=True)
    if writes_audio:
        (root / "audio").mkdir(exist_ok=True)

    order = _class_order(seed, len(classes), n_per_class)
    bg_lumas = _shared_bg_lumas(seed, n_per_class)
    seen = [0] * len(classes)
    present = ["text"] + (["image"] if has_image else []) + (["audio"] if writes_audio else [])

    rows = []
    for i, ci in enumerate(order):
        sid = f"u{i:05d}"
        j = seen[ci]
        seen[ci] += 1
        # One generator per (row, purpose): a row's media do not depend on the variant.
        rng = np.random.default_rng([seed, i, 1])
        plan = _row_plan(seed, i, ci, len(classes), p_uninformative)
        text = _text(np.random.default_rng([seed, i, 2]), plan.phrases)
        missing = None
        if rng.random() < MISSING_FRACTION and len(present) > 1:
            missing = present[int(rng.integers(0, len(present)))]
        row = {"sample_id": sid, "label": classes[ci], "text": "" if missing == "text" else text}
        if has_image:
            row["image"] = ""
            if missing != "image":
                irng = np.random.default_rng([seed, i, 3])
                jpeg = irng.random() < 0.5
                img = _image(irng, plan.hue_families, bg_lumas[j])
                rel = f"images/{sid}.{'jpg' if jpeg else 'png'}"
                if jpeg:
                    img.save(root / rel, format="JPEG", quality=JPEG_QUALITY, optimize=False)
                else:
                    img.save(root / rel, format="PNG", compress_level=1)
                row["image"] = rel
        if has_audio_col:
            row["audio"] = ""
            if writes_audio and missing != "audio":
                container, subtype, rate, channels, suffix = AUDIO_FORMATS[i % len(AUDIO_FORMATS)]
                wave = _audio(np.random.default_rng([seed, i, 4]), plan.direction, rate, channels)
                rel = f"audio/{sid}{suffix}"
                sf.write(root / rel, wave, rate, format=container, subtype=subtype)
                row["audio"] = rel
        rows.append(row)

    columns = ["sample_id", "label", "text"] + (["image"] if has_image else []) + (["audio"] if has_audio_col else [])
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return root


def _shared_bg_lumas(seed: int, n: int) -> np.ndarray:
    """Background luma of the j-th image of every class: the same sequence for all classes."""
    return np.random.default_rng([seed, 0xB6]).uniform(*BG_LUMA, size=n)


class _RowPlan(NamedTuple):
    informative: tuple[bool, bool, bool]  # text, image, audio
    phrases: tuple[str, ...]  # the text draws its phrase from these
    hue_families: list[tuple[float, float]]  # shape k of the image takes hue family k % len
    direction: str  # of the audio glide


def _row_plan(seed: int, i: int, class_index: int, n_classes: int, p_uninformative: float) -> _RowPlan:
    """What row i's modalities show, from its own generator (independent of the variant and of the
    media generators, so an informative modality's bytes do not depend on `p_uninformative`)."""
    rng = np.random.default_rng([seed, i, 5])
    u = rng.random(len(MODALITIES))
    mix = rng.permutation(len(HUE_FAMILIES))  # order of the class families in a mixed image
    random_direction = GLIDES[int(rng.integers(0, len(GLIDES)))]
    text_inf, image_inf, audio_inf = (bool(v >= p_uninformative) for v in u)
    class_families = sorted({k % len(HUE_FAMILIES) for k in range(n_classes)})
    own_family = HUE_FAMILIES[class_index % len(HUE_FAMILIES)]
    return _RowPlan(
        informative=(text_inf, image_inf, audio_inf),
        phrases=PHRASES[class_index % len(PHRASES)] if text_inf else NEUTRAL_PHRASES,
        hue_families=[own_family] if image_inf else [HUE_FAMILIES[k] for k in mix if k in class_families],
        direction=GLIDES[class_index % len(GLIDES)] if audio_inf else random_direction,
    )


def _plans(n_per_class: int, classes, seed: int, p_uninformative: float) -> list[_RowPlan]:
    order = _class_order(seed, len(classes), n_per_class)
    return [_row_plan(seed, i, ci, len(classes), p_uninformative) for i, ci in enumerate(order)]


def glide_starts(
    *, n_per_class: int = 40, classes=DEFAULT_CLASSES, seed: int = 0, p_uninformative: float = P_UNINFORMATIVE
) -> list[float]:
    """The glide start (seconds) of every row of `make_dataset(...)` with the same arguments.

    (It does not depend on `p_uninformative`; the argument is accepted for symmetry.)
    """
    plans = _plans(n_per_class, classes, seed, p_uninformative)
    return [_audio_plan(np.random.default_rng([seed, i, 4]), plan.direction)[1] for i, plan in enumerate(plans)]


def glide_directions(
    *, n_per_class: int = 40, classes=DEFAULT_CLASSES, seed: int = 0, p_uninformative: float = P_UNINFORMATIVE
) -> list[str]:
    """The glide direction ("rising" / "flat" / "falling") of every row of `make_dataset(...)`."""
    return [plan.direction for plan in _plans(n_per_class, classes, seed, p_uninformative)]


def informative_mask(
    *, n_per_class: int = 40, classes=DEFAULT_CLASSES, seed: int = 0, p_uninformative: float = P_UNINFORMATIVE
) -> dict[str, np.ndarray]:
    """{"text" | "image" | "audio": bool array over the rows of `make_dataset(...)`}: True where that
    modality carries the row's class. Independent of the variant and of which cells are empty: a
    missing or absent modality carries nothing whatever its flag says (combine with the manifest).
    """
    plans = _plans(n_per_class, classes, seed, p_uninformative)
    flags = np.array([plan.informative for plan in plans], dtype=bool).reshape(-1, len(MODALITIES))
    return {m: flags[:, k] for k, m in enumerate(MODALITIES)}


def _class_order(seed: int, n_classes: int, n_per_class: int) -> list[int]:
    """The class index of every row: `n_per_class` of each, in a seeded order."""
    return np.random.default_rng([seed, 0x5EED]).permutation(np.repeat(np.arange(n_classes), n_per_class)).tolist()
