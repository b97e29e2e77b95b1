"""A small valid multimodal dataset built in tmp_path, and helpers to break it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

from mmops.validate import ValidateConfig, ValidationReport, validate_dataset

CLASSES = [str(d) for d in range(10)]
SPLITS = ("train", "val", "test")
SR = 16_000


def write_png(path: Path, seed: int, size: tuple[int, int] = (8, 8), mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)
    Image.fromarray(pixels, "L").convert(mode).save(path)


def write_wav(path: Path, seed: int, seconds: float = 0.2, sr: int = SR, subtype: str = "PCM_16",
              samples: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if samples is None:
        rng = np.random.default_rng(seed)
        samples = (0.1 * rng.standard_normal(int(seconds * sr))).astype(np.float32)
    sf.write(path, samples, sr, subtype=subtype, format="WAV")


def make_dataset(root: Path, n: int = 30, fmt: str = "csv") -> Path:
    """n rows (labels 0..9 round robin, thirds train/val/test), each with its own PNG and WAV."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        sid, label = f"s{i:03d}", str(i % 10)
        write_png(root / "images" / f"{sid}.png", seed=i)
        write_wav(root / "audio" / f"{sid}.wav", seed=1000 + i)
        rows.append({"sample_id": sid, "split": SPLITS[min(i * 3 // n, 2)], "label": label,
                     "text": f"the digit {label}, sample {i}",
                     "image": f"images/{sid}.png", "audio": f"audio/{sid}.wav"})
    df = pd.DataFrame(rows)
    if fmt == "parquet":
        df.to_parquet(root / "manifest.parquet", index=False)
    else:
        df.to_csv(root / "manifest.csv", index=False)
    return root


def load(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)


def save(root: Path, df: pd.DataFrame) -> None:
    df.to_csv(root / "manifest.csv", index=False)


def set_cell(root: Path, sample_id: str, column: str, value: str) -> None:
    df = load(root)
    df.loc[df["sample_id"] == sample_id, column] = value
    save(root, df)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "ds")


@pytest.fixture
def check() -> Callable[..., ValidationReport]:
    def _check(root: Path, cfg: ValidateConfig | None = None, **knobs) -> ValidationReport:
        cfg = cfg or ValidateConfig(**knobs)
        return validate_dataset(root, CLASSES, cfg)

    return _check


def assert_fails(report: ValidationReport, rule: str, *needles: str) -> None:
    """The report fails, on `rule`, with every needle (sample id / column) in that rule's message."""
    assert not report.passed, report.summary()
    hits = [f for f in report.failures if f.rule == rule]
    assert hits, f"no {rule} failure in:\n{report.summary()}"
    assert any(f.severity == "error" for f in hits)
    assert any(rule in f.message and all(n in f.message for n in needles) for f in hits), (
        f"{needles} not all in the {rule} messages: {[f.message for f in hits]}"
    )


@pytest.fixture
def kit():
    """The helpers above as one object (test modules should not import conftest by name)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        CLASSES=CLASSES, make_dataset=make_dataset, load=load, save=save, set_cell=set_cell,
        write_png=write_png, write_wav=write_wav, assert_fails=assert_fails,
    )
