"""Lineage facts recorded with every model version: git commit, params hash, data hash."""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
import yaml

from mmops.data.hashing import file_sha256
from mmops.data.manifest import MEDIA_COLUMNS


def git_commit() -> tuple[str, bool]:
    """(commit, dirty) of the working tree, or ("unknown", False) outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(
            subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, check=True).stdout.strip()
        )
        return commit, dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def dvc_data_md5(data_dir: Path, lock: Path = Path("dvc.lock")) -> str | None:
    """DVC's md5 of the dataset folder as recorded in `dvc.lock`, when DVC produced or tracks it."""
    if not lock.exists():
        return None
    target = Path(data_dir).resolve()
    for stage in (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).values():
        for out in stage.get("outs", []):
            if (lock.parent / out["path"]).resolve() == target:
                return out.get("md5")
    return None


def split_rows(splits_csv: Path) -> str:
    """Rows per split of the run's data, e.g. `2066 rows: train 1259, val 269, test 269, test_shifted 269`."""
    counts = pd.read_csv(splits_csv, dtype=str, usecols=["split"])["split"].value_counts()
    order = ["train", "val", "test", *sorted(set(counts.index) - {"train", "val", "test"})]
    return f"{int(counts.sum())} rows: " + ", ".join(f"{s} {int(counts[s])}" for s in order if s in counts)


def params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


SERVING_PACKAGES = [
    "torch", "torchaudio", "transformers", "mlflow", "pandas", "numpy", "scikit-learn",
    "soundfile", "pillow", "pydantic", "pyyaml", "rich", "matplotlib", "onnxruntime", "onnx",
]


def pip_requirements() -> list[str]:
    """Exact versions of what the pyfunc imports (local build tags like +cpu dropped)."""
    reqs = []
    for name in SERVING_PACKAGES:
        try:
            reqs.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            continue
    return reqs


def frozen_test_hash(frame: pd.DataFrame) -> str:
    """sha256 of `frozen_test_rows` by content: sample id, label, text and the bytes of each media file."""
    h = hashlib.sha256(b"mmops-test-rows-v1\n")
    for row in frame.sort_values("sample_id").to_dict("records"):
        media = [file_sha256(row[c]) if row[c] else "" for c in MEDIA_COLUMNS]
        h.update("\0".join([str(row["sample_id"]), str(row["label"]), str(row["text"]), *media]).encode() + b"\n")
    return h.hexdigest()

