"""Lineage facts recorded with every model version: git commit, params hash, data hash."""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


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
    import yaml

    target = Path(data_dir).resolve()
    for stage in (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).values():
        for out in stage.get("outs", []):
            if (lock.parent / out["path"]).resolve() == target:
                return out.get("md5")
    return None


def params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


SERVING_PACKAGES = [
    "torch", "torchaudio", "transformers", "mlflow", "pandas", "numpy", "scikit-learn",
    "soundfile", "pillow", "pydantic", "pyyaml", "rich", "matplotlib",
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


def model_hash(model_dir: Path) -> str:
    """sha256 over every file of a model folder (relative path + content), independent of its location."""
    from mmops.data.hashing import file_sha256

    root = Path(model_dir)
    h = hashlib.sha256(b"mmops-model-v1\n")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + file_sha256(path).encode() + b"\n")
    return h.hexdigest()


def frozen_test_hash(frame) -> str:
    """sha256 of the test rows by content: sample id, label, text and the bytes of each media file."""
    from mmops.data.hashing import file_sha256

    h = hashlib.sha256(b"mmops-test-rows-v1\n")
    for row in frame.sort_values("sample_id").itertuples(index=False):
        media = [file_sha256(p) if p else "" for p in (row.image, row.audio)]
        h.update("\0".join([str(row.sample_id), str(row.label), str(row.text), *media]).encode() + b"\n")
    return h.hexdigest()

