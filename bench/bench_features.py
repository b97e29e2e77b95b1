"""Benchmark featurisation of data unlike the demo: `python bench/bench_features.py [--images N] [--clips N]`.

Generates, in a temp folder, 640x480 photo-like RGB images (half JPEG, half PNG) and 10 s
44.1 kHz stereo WAV clips, then measures in this one process, on the same files:
  - images: `FeatureExtractor` (224 px RGB, aspect-preserving pad, bounded JPEG draft decode)
    ÷ a bare PIL loop (open, convert RGB, resize to 224x224, to a tensor); goal >= 0.8;
  - audio: `FeatureExtractor` (10 s clips, bounded decode, downmix, polyphase resample, log-mel)
    ÷ a bare soundfile + torchaudio loop (read, downmix, `torchaudio.functional.resample`,
    MelSpectrogram); goal >= 0.8.
Throughput is the best of `--repeats` timed passes after one warm-up, without the feature cache.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._report import record  # noqa: E402

BENCH = "features"
SIZE, CLIP_SECONDS, RATE = 224, 10.0, 44100


def photo(rng, width: int = 640, height: int = 480):
    """A smooth colour gradient, a few solid shapes and sensor-like noise (compresses like a photo)."""
    import numpy as np
    from PIL import Image, ImageDraw

    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    base = np.stack([x, y, 1 - x * y], axis=-1) * rng.uniform(120, 255, 3)
    img = Image.fromarray((base + rng.normal(0, 6, base.shape)).clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.integers(0, width - 60), rng.integers(0, height - 60)
        draw.ellipse((x0, y0, x0 + rng.integers(30, 200), y0 + rng.integers(30, 200)), fill=tuple(rng.integers(0, 256, 3)))
    return img


def clip(rng) -> bytes:
    import numpy as np
    import soundfile as sf

    t = np.arange(int(CLIP_SECONDS * RATE)) / RATE
    tone = np.sin(2 * np.pi * (300 + 200 * t) * t)  # a glide
    wave = 0.3 * np.stack([tone, np.roll(tone, 50)], 1) + 0.02 * rng.standard_normal((len(t), 2))
    buf = io.BytesIO()
    sf.write(buf, wave.astype(np.float32), RATE, format="WAV")
    return buf.getvalue()


def best_rate(fn, n: int, repeats: int) -> float:
    fn()  # warm-up
    best = min(_timed(fn) for _ in range(repeats))
    return n / best


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import numpy as np
    import soundfile as sf
    import torch
    import torchaudio
    from PIL import Image

    from mmops.config import FeaturesConfig
    from mmops.features.extract import FeatureExtractor

    torch.set_num_threads(1)  # both sides single-threaded: the ratio compares the code, not the cores
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="mmops-bench-features-") as tmp:
        root = Path(tmp)
        for i in range(args.images):
            fmt = "JPEG" if i % 2 == 0 else "PNG"
            photo(rng).save(root / f"img{i:03d}.{fmt.lower()}", format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        for i in range(args.clips):
            (root / f"clip{i:03d}.wav").write_bytes(clip(rng))
        images = [p.read_bytes() for p in sorted(root.glob("img*"))]
        clips = [p.read_bytes() for p in sorted(root.glob("clip*.wav"))]

    features = FeaturesConfig(
        image={"size": SIZE, "mode": "rgb", "fit": "pad", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        audio={"max_seconds": 2.0, "max_clip_seconds": CLIP_SECONDS},
    )
    extractor = FeatureExtractor(features, ["image", "audio"], None)
    none = lambda items: [None] * len(items)  # noqa: E731
    a = features.audio
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=a.sample_rate, n_fft=a.n_fft, hop_length=a.hop_length, n_mels=a.n_mels)

    def bare_images() -> None:
        for data in images:
            with Image.open(io.BytesIO(data)) as img:
                pixels = np.asarray(img.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR), np.float32) / 255.0
            torch.from_numpy(pixels).permute(2, 0, 1)

    def bare_audio() -> None:
        for data in clips:
            wav, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
            wave = torchaudio.functional.resample(torch.from_numpy(wav.mean(axis=1)), rate, a.sample_rate)
            with torch.no_grad():
                torch.log(mel(wave) + 1e-6)

    def ours_images() -> None:
        extractor(none(images), images, none(images))

    def ours_audio() -> None:
        extractor(none(clips), none(clips), clips)

    rates = {name: best_rate(fn, len(items), args.repeats) for name, fn, items in (
        ("bare_images", bare_images, images), ("ours_images", ours_images, images),
        ("bare_audio", bare_audio, clips), ("ours_audio", ours_audio, clips),
    )}
    record(BENCH, f"{SIZE} px RGB images, FeatureExtractor ÷ bare PIL loop", rates["ours_images"] / rates["bare_images"],
           "ratio", ">= 0.8", f"mmops {rates['ours_images']:.0f} img/s, bare {rates['bare_images']:.0f} img/s; "
           f"{len(images)} 640x480 photo-like images, half JPEG (draft decode), half PNG; 1 thread")
    record(BENCH, f"{CLIP_SECONDS:g} s 44.1 kHz stereo clips, FeatureExtractor ÷ bare soundfile+torchaudio loop",
           rates["ours_audio"] / rates["bare_audio"], "ratio", ">= 0.8",
           f"mmops {rates['ours_audio']:.1f} clips/s, bare {rates['bare_audio']:.1f} clips/s; {len(clips)} WAV clips "
           f"-> log-mel of the whole clip at {a.sample_rate} Hz; 1 thread")


if __name__ == "__main__":
    main()
