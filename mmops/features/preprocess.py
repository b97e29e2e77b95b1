"""Stage `preprocess`: a validated dataset -> per split, a folder of feature shards (`mmops.features.shards`)."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pandas as pd
import torch
from rich.progress import Progress

from mmops.atomic import atomic_path, atomic_write_json
from mmops.catalog import Catalog
from mmops.config import FeaturesConfig, ModelConfig
from mmops.config.resolved import Resolved
from mmops.data.manifest import SHIFTED, SPLITS, read_manifest
from mmops.data.splits import assign_splits
from mmops.errors import UserError
from mmops.features.auto import resolve
from mmops.features.extract import FeatureExtractor, is_missing, load_media_bytes
from mmops.features.shards import shard_name, shard_rows, write_index, write_shard


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


Mapper = Callable[[Callable[[Any], Any], list], Iterable]  # map(fn, items) -> results, in order


@dataclass(frozen=True)
class ShardJob:
    """Everything one featurizing task needs (picklable: it travels to worker processes)."""

    features: str  # FeaturesConfig, resolved, as JSON
    model: str  # ModelConfig, resolved, as JSON
    cache_dir: str | None
    base_dir: str
    out: str  # the shard file
    rows: tuple  # (sample_id, label index, text, image cell, audio cell) per row


@lru_cache(maxsize=4)
def _extractor(features: str, model: str, cache_dir: str | None) -> FeatureExtractor:
    """One extractor per worker process and config (the tokenizer loads once)."""
    return FeatureExtractor.for_model(
        FeaturesConfig.model_validate_json(features), ModelConfig.model_validate_json(model),
        cache_dir=Path(cache_dir) if cache_dir else None,
    )


def featurize_shard(job: ShardJob) -> dict:
    """Featurize one shard's rows and write it; return its index entry. Depends on nothing but `job`,
    so a split's bytes are the same whichever worker, process or machine wrote each shard."""
    extractor = _extractor(job.features, job.model, job.cache_dir)
    ids, labels, texts, images, audios = (list(col) for col in zip(*job.rows))
    base = Path(job.base_dir)
    batch = extractor(texts, [load_media_bytes(v, base) for v in images], [load_media_bytes(v, base) for v in audios])
    batch["labels"] = torch.tensor(labels, dtype=torch.long)
    return {**write_shard(Path(job.out), batch), "sample_ids": ids}


def _worker_init() -> None:
    torch.set_num_threads(1)  # one process per core; intra-op threads would oversubscribe


def local_map(workers: int) -> Mapper:
    """`map` in this process (`workers` <= 1) or over a pool of `workers` spawned processes."""

    def run(fn, items: list) -> Iterator:
        if workers <= 1 or len(items) <= 1:
            yield from map(fn, items)
            return
        context = multiprocessing.get_context("spawn")  # fork after torch threads started can deadlock
        with ProcessPoolExecutor(min(workers, len(items)), mp_context=context, initializer=_worker_init) as pool:
            yield from pool.map(fn, items)

    return run


def _cell(row: pd.Series, column: str) -> Any:
    value = row.get(column)
    return None if is_missing(value) else value


def plan_shards(
    paths: Catalog, seed: int, classes: list[str] | str, features: FeaturesConfig, model: ModelConfig
) -> tuple[Resolved, dict, list[ShardJob]]:
    """Resolve `auto` and cut every split into shard jobs of about `features.store.shard_mb`.
    Returns (resolved, {split: number of rows}, jobs)."""
    report = require_passed_validation(paths.validation_json)
    df = assign_splits(read_manifest(paths.data), seed)
    resolved = resolve(classes, features, model, df, paths.data)
    class_index = {c: i for i, c in enumerate(resolved.classes)}
    feats, mdl = resolved.features_for(features), resolved.model_for(model)
    per_shard = shard_rows(FeatureExtractor.for_model(feats, mdl).row_bytes(), features.store.shard_mb)
    counts, jobs = {}, []
    for split in SPLITS + ((SHIFTED,) if (df["split"] == SHIFTED).any() else ()):
        rows = df[df["split"] == split].reset_index(drop=True)
        if rows.empty:
            raise ValueError(f"split {split!r} has no samples; the pipeline needs train, val and test")
        unknown = sorted(set(rows["label"]) - set(class_index))
        if unknown:
            raise ValueError(f"split {split!r} has labels {unknown} that no training row has; "
                             f"the classes are {resolved.classes}")
        records = tuple(
            (str(r["sample_id"]), class_index[r["label"]], _cell(r, "text"), _cell(r, "image"), _cell(r, "audio"))
            for _, r in rows.iterrows()
        )
        for number, start in enumerate(range(0, len(records), per_shard)):
            jobs.append(ShardJob(
                feats.model_dump_json(), mdl.model_dump_json(),
                str(paths.feature_cache), str(paths.data), str(paths.split(split) / shard_name(number)),
                records[start : start + per_shard],
            ))
        counts[split] = len(rows)
    meta = {"classes": resolved.classes, "counts": counts, "data_hash": report.get("data_hash"),
            "rows_per_shard": per_shard, "splits": df[["sample_id", "split"]]}
    return resolved, meta, jobs


def preprocess(
    paths: Catalog, seed: int, classes: list[str] | str, features: FeaturesConfig, model: ModelConfig,
    mapper: Mapper | None = None,
) -> Resolved:
    """Resolve every `auto` from the data (`resolved.yaml`), then featurize each split of the validated
    dataset `paths.data` into a folder of shards in `paths.features` (`test_shifted` too when the
    manifest has that split). Shards are featurized by `mapper` (default: a local process pool of
    `features.store.workers`). Returns what `auto` resolved to."""
    resolved, meta, jobs = plan_shards(paths, seed, classes, features, model)
    if paths.features.exists():  # shards of an earlier run (other sizes, other splits) never mix in
        shutil.rmtree(paths.features)
    paths.features.mkdir(parents=True)
    resolved.write(paths.resolved)
    mapper = mapper or local_map(features.store.resolved_workers(len(jobs)))
    entries = []
    with Progress(transient=True) as progress:
        task = progress.add_task(f"featurize ({len(jobs)} shards)", total=len(jobs))
        for entry in mapper(featurize_shard, jobs):
            entries.append(entry)
            progress.advance(task)
    for split in meta["counts"]:
        folder = paths.split(split)
        write_index(folder, [e for job, e in zip(jobs, entries) if Path(job.out).parent == folder])
    with atomic_path(paths.splits_csv) as tmp:
        meta.pop("splits").to_csv(tmp, index=False)
    atomic_write_json(paths.features_meta, meta)
    return resolved
