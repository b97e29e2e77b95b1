"""`--set` overrides that make a pipeline run small, fast and rooted in a temp folder."""

from __future__ import annotations

from pathlib import Path


def overrides_for(tmp: Path, text_model: Path, **extra: str) -> list[str]:
    """`--set` overrides that keep a test fast and inside `tmp`."""
    base = {
        "paths.data": tmp / "data",
        "paths.reports": tmp / "reports",
        "paths.features": tmp / "features",
        "paths.model": tmp / "model",
        "paths.metrics": tmp / "metrics",
        "paths.cache": tmp / "cache",
        "model.text.options.pretrained": text_model,
        "model.width": 32,
        "model.head.hidden": 64,
        "train.epochs": 8,
        "train.batch_size": 16,
        "train.lr": 0.005,
        "train.patience": 8,
        "gate.floors.accuracy": 0.3,
        "gate.floors.macro_f1": 0.25,
        "demo.n_samples": 200,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]
