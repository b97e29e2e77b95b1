"""Lineage facts recorded with every model version: git commit, params hash, data hash."""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib.metadata import PackageNotFoundError, version


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
