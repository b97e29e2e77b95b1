"""Built-in demo dataset `avdigits`: one spoken, written and hinted digit per sample.

Each sample is one of the 1,797 real handwritten 8x8 digits of scikit-learn's `load_digits`:

- image: the real digit upscaled to a grayscale PNG (ink bright on dark); a share is heavily
  degraded (occlusion, noise, blur) so that the image alone is not enough;
- audio: the digit's English word spoken by espeak-ng with a random voice, rate and pitch,
  mixed with white/pink/brown noise at a random SNR, as a 16 kHz mono PCM_16 WAV; a disjoint
  share is drowned in speech-shaped noise at a very low SNR;
- text: a short clue that narrows the digit without naming it ("it is an odd number",
  "greater than 4", ...), or filler.

Image and audio are never both bad at once, so a model that fuses them beats either alone.

With `shifted.enabled` (the default) the test digits are rendered a second time as the split
`test_shifted`, the way training never saw them: other voices, other noise colours and levels,
digits at other scales and positions. Evaluation scores it next to the in-domain test split.
Calibration with the defaults (test split, 15 epochs of the default encoders): image-only
macro-F1 0.74, audio-only 0.72, text-only 0.17 (bag of words), image+audio joint model 0.96.
Everything is drawn from per-sample generators seeded by `(seed, sample index)`: two runs write
byte-identical files whatever the thread pool does.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from mmops.atomic import atomic_path
from mmops.config.demo import DemoConfig, ShiftConfig
from mmops.data.manifest import COLUMNS, MANIFESTS, SHIFTED

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PRIMES = frozenset({2, 3, 5, 7})
ESPEAK_RATE = 22050
# Noise colour -> exponent k of the amplitude spectrum |N(f)| ~ f^k.
NOISE_COLOURS = {"white": 0.0, "pink": -0.5, "brown": -1.0, "blue": 0.5, "violet": 1.0}
TRAIN_COLOURS = ("white", "pink", "brown")


_PARITY = {
    True: ["it is an even number", "the number is even", "an even digit", "it splits evenly in half"],
    False: ["it is an odd number", "the number is odd", "an odd digit", "it cannot be halved into whole numbers"],
}
_PRIME = {
    True: ["it is a prime number", "this number is prime", "a prime"],
    False: ["it is not a prime number", "this number is not prime", "not a prime"],
}
_GREATER = ["greater than {n}", "it is bigger than {n}", "larger than {n}", "more than {n}"]
_SMALLER = ["smaller than {n}", "it is less than {n}", "below {n}", "lower than {n}"]
_BETWEEN = ["somewhere between {a} and {b}", "it lies between {a} and {b}"]
_FILLER = ["a handwritten digit", "no hint this time", "guess the number", "see and hear it", "a digit"]


def _say(n: int, rng: np.random.Generator) -> str:
    """Another number, as a numeral or a word."""
    return str(n) if rng.random() < 0.5 else WORDS[n]


def _pick(options: list[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def make_clue(digit: int, rng: np.random.Generator, p_filler: float = 0.2) -> str:
    """A short clue that narrows `digit` without naming it (other numbers may appear)."""
    if rng.random() < p_filler:
        return _pick(_FILLER, rng)
    kinds = ["parity", "prime"] + (["greater"] if digit > 0 else []) + (["smaller"] if digit < 9 else [])
    if 0 < digit < 9:
        kinds.append("between")
    kind = _pick(kinds, rng)
    if kind == "parity":
        return _pick(_PARITY[digit % 2 == 0], rng)
    if kind == "prime":
        return _pick(_PRIME[digit in PRIMES], rng)
    if kind == "greater":
        return _pick(_GREATER, rng).format(n=_say(int(rng.integers(0, digit)), rng))
    if kind == "smaller":
        return _pick(_SMALLER, rng).format(n=_say(int(rng.integers(digit + 1, 10)), rng))
    a, b = int(rng.integers(0, digit)), int(rng.integers(digit + 1, 10))
    return _pick(_BETWEEN, rng).format(a=_say(a, rng), b=_say(b, rng))


def names_digit(text: str, digit: int) -> bool:
    """Whether `text` names `digit` (its numeral or its word, as a whole word)."""
    return re.search(rf"(?<![0-9]){digit}(?![0-9])|\b{WORDS[digit]}\b", text.lower()) is not None


# --------------------------------------------------------------------------- images


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(x, sigma=sigma, mode="nearest") if sigma > 0 else x


def _place(small: Image.Image, size: int, shift: ShiftConfig | None, rng: np.random.Generator) -> np.ndarray:
    """The digit upscaled to fill a size x size image, or (shifted) smaller and off-centre."""
    if shift is None:
        return np.asarray(small.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float64).copy()
    side = max(4, int(round(rng.uniform(*shift.digit_scale) * size)))
    digit = np.asarray(small.resize((side, side), Image.Resampling.BILINEAR), dtype=np.float64)
    centre = (size - side) / 2
    top, left = (
        int(np.clip(round(centre + rng.uniform(-shift.max_offset, shift.max_offset) * size), 0, size - side))
        for _ in range(2)
    )
    x = np.zeros((size, size))
    x[top : top + side, left : left + side] = digit
    return x


def make_image(
    pixels8: np.ndarray, hard: bool, cfg: DemoConfig, rng: np.random.Generator, shift: ShiftConfig | None = None
) -> bytes:
    """An 8x8 digit (values 0..16) -> grayscale PNG bytes, degraded lightly or heavily."""
    size = cfg.image_size
    small = Image.fromarray((pixels8.reshape(8, 8) / 16.0).astype(np.float32), mode="F")
    x = _place(small, size, shift, rng)
    scale = size / 8.0
    if hard:
        x = _blur(x, rng.uniform(*cfg.hard_blur_sigma) * scale)
        side = int(round(rng.uniform(*cfg.hard_occlusion) * size))
        top, left = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        fill = rng.choice(3)  # dark, bright, or random blocks
        if fill == 0:
            x[top : top + side, left : left + side] = 0.0
        elif fill == 1:
            x[top : top + side, left : left + side] = rng.uniform(0.6, 1.0)
        else:
            blocks = rng.random((side // 4 + 1, side // 4 + 1))
            x[top : top + side, left : left + side] = np.kron(blocks, np.ones((4, 4)))[:side, :side]
        x = x + rng.normal(0.0, rng.uniform(*cfg.hard_noise_std), size=x.shape)
    else:
        if rng.random() < cfg.p_image_blur:
            x = _blur(x, rng.uniform(*cfg.blur_sigma) * scale)
        x = x + rng.normal(0.0, rng.uniform(0.0, cfg.image_noise_std), size=x.shape)
    img = Image.fromarray(np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8), mode="L")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


# --------------------------------------------------------------------------- audio


def _espeak(word: str, voice: str, rate: int, pitch: int, tmp: Path, name: str) -> np.ndarray:
    import soundfile as sf

    out = tmp / f"{name}.wav"
    cmd = ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", str(out), word]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    wave, sr = sf.read(out, dtype="float64", always_2d=True)
    out.unlink()
    if sr != ESPEAK_RATE:
        raise RuntimeError(f"espeak-ng wrote {sr} Hz, expected {ESPEAK_RATE}")
    return wave.mean(axis=1)


def _trim(wave: np.ndarray, rel: float = 0.02) -> np.ndarray:
    loud = np.flatnonzero(np.abs(wave) > rel * (np.abs(wave).max() + 1e-12))
    return wave[loud[0] : loud[-1] + 1] if loud.size else wave


def _noise(
    n: int, rng: np.random.Generator, rate: int, speech_shaped: bool = False, colours=TRAIN_COLOURS
) -> np.ndarray:
    """Unit-power noise: speech-shaped (flat to 500 Hz, then -6 dB/octave; the same shape for
    every word, so it masks speech without carrying the label) or one of `colours`."""
    spectrum = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, d=1.0 / rate)
    if speech_shaped:
        spectrum *= np.where(f < 500.0, 1.0, 500.0 / np.maximum(f, 1.0)) * (f > 80.0)
    else:
        spectrum *= np.maximum(f, f[1]) ** NOISE_COLOURS[colours[int(rng.integers(len(colours)))]]
    noise = np.fft.irfft(spectrum, n=n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def make_audio(
    speech22k: np.ndarray, hard: bool, cfg: DemoConfig, rng: np.random.Generator, shift: ShiftConfig | None = None
) -> bytes:
    """espeak-ng speech at 22,050 Hz -> noisy mono PCM_16 WAV bytes at `cfg.sample_rate`."""
    from math import gcd

    import soundfile as sf
    from scipy.signal import resample_poly

    g = gcd(cfg.sample_rate, ESPEAK_RATE)
    speech = resample_poly(_trim(speech22k), cfg.sample_rate // g, ESPEAK_RATE // g)
    n = int(cfg.clip_seconds * cfg.sample_rate)
    lead = int(rng.uniform(0.0, cfg.max_lead_seconds) * cfg.sample_rate)
    clip = np.zeros(n)
    part = speech[: max(0, n - lead)]
    clip[lead : lead + part.size] = part
    power = np.mean(speech**2) + 1e-12
    snr = rng.uniform(*(cfg.hard_snr_db if hard else shift.snr_db if shift else cfg.snr_db))
    colours = shift.noise_colours if shift else TRAIN_COLOURS
    noise = _noise(n, rng, cfg.sample_rate, speech_shaped=hard, colours=colours)
    clip = clip + noise * np.sqrt(power / 10.0 ** (snr / 10.0))
    clip *= rng.uniform(0.3, 0.9) / (np.abs(clip).max() + 1e-12)
    buf = io.BytesIO()
    sf.write(buf, clip.astype(np.float32), cfg.sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


# --------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class _Plan:
    sample_id: str
    index: int  # row of load_digits
    digit: int
    split: str
    condition: str  # moderate | image_hard | audio_hard | image_missing | audio_missing
    text_missing: bool
    shifted: bool = False


def _subset(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A stratified subset of `n` row indices, in ascending order."""
    if n >= y.size:
        return np.arange(y.size)
    classes, counts = np.unique(y, return_counts=True)
    quota = np.floor(counts * n / y.size).astype(int)
    rest = counts * n / y.size - quota
    quota[np.argsort(-rest, kind="stable")[: n - quota.sum()]] += 1
    picked = [rng.permutation(np.flatnonzero(y == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picked))


def _splits(y: np.ndarray, cfg: DemoConfig, rng: np.random.Generator) -> np.ndarray:
    """Stratified train/val/test labels; each class with >= 3 samples appears in every split."""
    out = np.full(y.size, "train", dtype=object)
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        k = members.size
        n_val, n_test = round(k * cfg.val_fraction), round(k * cfg.test_fraction)
        if k >= 3:
            n_val, n_test = max(1, n_val), max(1, n_test)
        out[members[:n_val]] = "val"
        out[members[n_val : n_val + n_test]] = "test"
    return out


def _plan(y_all: np.ndarray, cfg: DemoConfig) -> list[_Plan]:
    rng = np.random.default_rng([cfg.seed, 0])
    rows = _subset(y_all, cfg.n_samples, rng)
    y = y_all[rows]
    split = _splits(y, cfg, rng)
    probs = [cfg.p_image_hard, cfg.p_audio_hard, cfg.p_missing_image, cfg.p_missing_audio]
    edges = np.cumsum(probs)
    names = ["image_hard", "audio_hard", "image_missing", "audio_missing"]
    plans = []
    for i, (row, digit) in enumerate(zip(rows, y)):
        u = rng.random()
        slot = int(np.searchsorted(edges, u, side="right"))
        plans.append(
            _Plan(
                sample_id=f"s{i:05d}",
                index=int(row),
                digit=int(digit),
                split=str(split[i]),
                condition=names[slot] if slot < len(names) else "moderate",
                text_missing=bool(rng.random() < cfg.p_missing_text),
            )
        )
    if cfg.shifted.enabled:  # the same test digits and conditions, rendered under shift
        tests = [p for p in plans if p.split == "test"]
        plans += [
            replace(p, sample_id=f"s{len(plans) + k:05d}", split=SHIFTED, shifted=True) for k, p in enumerate(tests)
        ]
    return plans


def _make_sample(plan: _Plan, pixels8: np.ndarray, out_dir: Path, cfg: DemoConfig, tmp: Path) -> dict:
    shift = cfg.shifted if plan.shifted else None
    rng = np.random.default_rng([cfg.seed, 2 if shift else 1, plan.index])
    voices, rates = (shift.voices, shift.rate_wpm) if shift else (cfg.voices, cfg.rate_wpm)
    voice = voices[int(rng.integers(len(voices)))]
    rate = int(rng.integers(rates[0], rates[1] + 1))
    pitch = int(rng.integers(cfg.pitch[0], cfg.pitch[1] + 1))
    text = make_clue(plan.digit, rng, cfg.p_text_filler)
    if names_digit(text, plan.digit):  # a template bug, never data
        raise AssertionError(f"clue names its digit {plan.digit}: {text!r}")
    row = {"sample_id": plan.sample_id, "split": plan.split, "label": str(plan.digit), "text": "", "image": "", "audio": ""}
    if not plan.text_missing:
        row["text"] = text
    if plan.condition != "image_missing":
        rel = f"images/{plan.sample_id}.png"
        (out_dir / rel).write_bytes(make_image(pixels8, plan.condition == "image_hard", cfg, rng, shift))
        row["image"] = rel
    if plan.condition != "audio_missing":
        speech = _espeak(WORDS[plan.digit], voice, rate, pitch, tmp, plan.sample_id)
        rel = f"audio/{plan.sample_id}.wav"
        (out_dir / rel).write_bytes(make_audio(speech, plan.condition == "audio_hard", cfg, rng, shift))
        row["audio"] = rel
    return row


def generate(out_dir: Path, cfg: DemoConfig, classes: list[str] | str | None = None) -> Path:
    """Write the `avdigits` dataset into `out_dir`; returns `out_dir / "manifest.csv"`.

    Its labels are the digits "0".."9"; `classes`, when pinned in params (a list), must name them.
    """
    from sklearn.datasets import load_digits

    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not on PATH: install it (apt-get install espeak-ng)")
    expected = [str(d) for d in range(10)]
    if isinstance(classes, list) and sorted(classes) != expected:
        raise ValueError(f"avdigits has classes {expected}, params name {classes}")
    out_dir = Path(out_dir)
    for sub in ("images", "audio"):
        shutil.rmtree(out_dir / sub, ignore_errors=True)
        (out_dir / sub).mkdir(parents=True)
    for stale in MANIFESTS:
        (out_dir / stale).unlink(missing_ok=True)
    manifest = out_dir / "manifest.csv"

    digits = load_digits()
    plans = _plan(np.asarray(digits.target), cfg)
    with tempfile.TemporaryDirectory(prefix="avdigits-") as tmp, ThreadPoolExecutor(cfg.workers) as pool:
        rows = list(pool.map(lambda p: _make_sample(p, digits.data[p.index], out_dir, cfg, Path(tmp)), plans))
    with atomic_path(manifest) as tmp:  # last and atomic: a killed generation leaves no manifest
        pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n")
    return manifest
