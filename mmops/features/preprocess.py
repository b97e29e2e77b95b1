"""Stage `preprocess`: a validated dataset -> one tensor file per split."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch
from rich.progress import Progress

from mmops.config import Params
from mmops.data.manifest import SHIFTED, SPLITS, read_manifest
from mmops.data.splits import assign_splits
from mmops.features.extract import FeatureExtractor, load_media_bytes
from mmops.features.tensors import concat

CHUNK = 256


class NotValidatedError(RuntimeError):
    """Preprocessing refuses data whose validation failed or is stale."""


def require_passed_validation(validation_json: Path, data_hash: str | None = None) -> dict:
    """Load the validation report and fail unless it passed (for this exact data, when hashed)."""
    if not validation_json.exists():
        raise NotValidatedError(f"{validation_json} not found: run `mmops validate` first")
    report = json.loads(validation_json.read_text())
    if not report.get("passed"):
        raise NotValidatedError(f"data validation failed ({validation_json}); refusing to continue")
    if data_hash is not None and report.get("data_hash") != data_hash:
        raise NotValidatedError(f"{validation_json} was written for other data; validate again")
    return report


def build_extractor(params: Params, cache: bool = True) -> FeatureExtractor:
    return FeatureExtractor.for_model(
        params.features, params.model, cache_dir=params.paths.cache / "features" if cache else None
    )


def featurize_frame(df: pd.DataFrame, extractor: FeatureExtractor, base_dir: Path | None, progress=None) -> dict:
    """Featurize manifest rows (paths relative to `base_dir`, or raw bytes) in chunks."""
    parts = []
    task = progress.add_task("featurize", total=len(df)) if progress else None
    for start in range(0, len(df), CHUNK):
        chunk = df.iloc[start : start + CHUNK]
        parts.append(
            extractor(
                list(chunk["text"]) if "text" in chunk else [""] * len(chunk),
                [load_media_bytes(v, base_dir) for v in chunk.get("image", [None] * len(chunk))],
                [load_media_bytes(v, base_dir) for v in chunk.get("audio", [None] * len(chunk))],
            )
        )
        if progress:
            progress.advance(task, len(chunk))
    return concat(parts)


def preprocess(data_dir: Path, validation_json: Path, out_dir: Path, params: Params) -> Path:
    """Featurize every split of a validated dataset into `out_dir/{train,val,test}.pt`
    (and `test_shifted.pt` when the manifest has that split)."""
    report = require_passed_validation(validation_json)
    df = assign_splits(read_manifest(data_dir), params.seed)
    class_index = {c: i for i, c in enumerate(params.classes)}
    extractor = build_extractor(params)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    with Progress(transient=True) as progress:
        for split in SPLITS + ((SHIFTED,) if (df["split"] == SHIFTED).any() else ()):
            rows = df[df["split"] == split].reset_index(drop=True)
            if rows.empty:
                raise ValueError(f"split {split!r} has no samples; the pipeline needs train, val and test")
            batch = featurize_frame(rows, extractor, data_dir, progress)
            batch["labels"] = torch.tensor([class_index[label] for label in rows["label"]])
            batch["sample_ids"] = list(rows["sample_id"])
            torch.save(batch, out_dir / f"{split}.pt")
            counts[split] = len(rows)
    df[["sample_id", "split"]].to_csv(out_dir / "splits.csv", index=False)
    meta = {"classes": params.classes, "counts": counts, "data_hash": report.get("data_hash")}
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    return out_dir
