"""Stage `preprocess`: a validated dataset -> one tensor file per split."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from rich.progress import Progress

from mmops.atomic import atomic_path, atomic_write_json, remove_stale_temps
from mmops.catalog import Catalog
from mmops.config import FeaturesConfig, ModelConfig
from mmops.data.manifest import SHIFTED, SPLITS, read_manifest
from mmops.data.splits import assign_splits
from mmops.errors import UserError
from mmops.features.auto import Resolved, resolve
from mmops.features.extract import FeatureExtractor, featurize_frame


class NotValidatedError(UserError, RuntimeError):
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


def preprocess(
    paths: Catalog, seed: int, classes: list[str] | str, features: FeaturesConfig, model: ModelConfig
) -> Resolved:
    """Resolve every `auto` from the data (`resolved.yaml`), then featurize each split of the validated
    dataset `paths.data` into one tensor file per split in `paths.features` (`test_shifted` too when
    the manifest has that split). Returns what `auto` resolved to."""
    report = require_passed_validation(paths.validation_json)
    df = assign_splits(read_manifest(paths.data), seed)
    resolved = resolve(classes, features, model, df, paths.data)
    class_index = {c: i for i, c in enumerate(resolved.classes)}
    extractor = FeatureExtractor.for_model(
        resolved.features_for(features), resolved.model_for(model), cache_dir=paths.feature_cache
    )
    paths.features.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(paths.features)  # half-written files of a killed earlier run
    resolved.write(paths.resolved)
    counts = {}
    with Progress(transient=True) as progress:
        for split in SPLITS + ((SHIFTED,) if (df["split"] == SHIFTED).any() else ()):
            rows = df[df["split"] == split].reset_index(drop=True)
            if rows.empty:
                raise ValueError(f"split {split!r} has no samples; the pipeline needs train, val and test")
            unknown = sorted(set(rows["label"]) - set(class_index))
            if unknown:
                raise ValueError(f"split {split!r} has labels {unknown} that no training row has; "
                                 f"the classes are {resolved.classes}")
            batch = featurize_frame(rows, extractor, paths.data, progress)
            batch["labels"] = torch.tensor([class_index[label] for label in rows["label"]])
            batch["sample_ids"] = list(rows["sample_id"])
            with atomic_path(paths.split(split)) as tmp:
                torch.save(batch, tmp)
            counts[split] = len(rows)
    with atomic_path(paths.splits_csv) as tmp:
        df[["sample_id", "split"]].to_csv(tmp, index=False)
    meta = {"classes": resolved.classes, "counts": counts, "data_hash": report.get("data_hash")}
    atomic_write_json(paths.features_meta, meta)
    return resolved
