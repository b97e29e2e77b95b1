"""The dataset contract: a folder with `manifest.csv` (or `.parquet`) and the media it names."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mmops.config import MODALITIES

COLUMNS = ["sample_id", "split", "label", *MODALITIES]
MEDIA_COLUMNS = [m for m in MODALITIES if m != "text"]  # cells that name a file
SPLITS = ("train", "val", "test")
# Optional: the test digits under distribution shift (unseen voices, noise, scales); evaluated only.
SHIFTED = "test_shifted"
ALL_SPLITS = SPLITS + (SHIFTED,)


MANIFESTS = ("manifest.csv", "manifest.parquet")  # in order of preference


def manifest_path(data_dir: str | Path) -> Path:
    """The manifest file of a dataset folder (CSV preferred, then Parquet)."""
    data_dir = Path(data_dir)
    for name in MANIFESTS:
        if (data_dir / name).exists():
            return data_dir / name
    raise FileNotFoundError(f"{data_dir}: no manifest.csv or manifest.parquet")


def read_manifest(data_dir: str | Path) -> pd.DataFrame:
    """Read the manifest as strings; empty cells become "" (a missing modality)."""
    path = manifest_path(data_dir)
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
    else:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    for col in df.columns:
        df[col] = df[col].fillna("").astype(str)
    return df
