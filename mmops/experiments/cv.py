"""K-fold cross-validation: K models on stratified folds of the featurized train split.

Fold k trains on the other K-1 folds of `train`, selects its epoch (early stopping) on the `val`
split as `mmops train` does, and is scored by the evaluate stage on fold k. The test split is never
read: it stays the frozen split the gate scores on. Fold shards are written once and hard-linked
into each fold's features folder, so the frozen-encoder embeddings are computed once per fold.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mmops.atomic import atomic_write_json, atomic_write_text
from mmops.catalog import Catalog, split_file
from mmops.config import Params
from mmops.errors import UserError
from mmops.features.shards import INDEX, SplitView, shard_name, write_index, write_shard
from mmops.registry.gate import CV_JSON, numeric, training_identity

CV_MD = "cv.md"
HEADLINE = ("accuracy", "macro_f1")


def fold_indices(labels: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Row numbers of each held-out fold (scikit-learn StratifiedKFold, shuffled, seeded): sorted,
    disjoint, every row in exactly one fold, each class spread evenly over the folds."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < folds:
        rare = classes[counts.argmin()].item()
        raise UserError(f"class {rare!r} has {counts.min()} training rows, fewer than --folds {folds}: "
                        f"use at most {counts.min()} folds")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [np.sort(held_out) for _, held_out in splitter.split(np.zeros(len(labels)), labels)]


def write_fold(split: SplitView, rows: np.ndarray, out: Path) -> Path:
    """`rows` of `split` as a split folder of their own (shards of at most the source's shard size)."""
    per_shard = max(e["rows"] for e in split.index["shards"])
    ids = split.sample_ids
    entries = []
    for number, start in enumerate(range(0, len(rows), per_shard)):
        part = rows[start : start + per_shard]
        entry = write_shard(out / shard_name(number), split.rows(torch.from_numpy(part)))
        entries.append({**entry, "sample_ids": [ids[i] for i in part]})
    return write_index(out, entries)


def link_split(dst: Path, sources: list[Path]) -> Path:
    """A split folder whose rows are those of `sources`, in order: their shards hard-linked (copied
    across file systems), never rewritten, so each shard's sha256 and its embedding cache entry hold."""
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    entries = []
    for n, source in enumerate(sources):
        for entry in json.loads((source / INDEX).read_text())["shards"]:
            name = f"{n:02d}-{entry['file']}"
            try:
                os.link(source / entry["file"], dst / name)
            except OSError:
                shutil.copy2(source / entry["file"], dst / name)
            entries.append({**entry, "file": name})
    return write_index(dst, entries)


def fold_catalogs(params: Params, paths: Catalog, folds: int, out_dir: Path) -> tuple[list[Catalog], list[int]]:
    """One catalogue per fold under `out_dir/fold-<k>` (features: train = the other folds, val = the
    pipeline's val split, test = fold k; model; metrics), and each fold's row count."""
    train = SplitView(paths.split("train"))
    held_out = fold_indices(np.array(params.classes)[train.column("labels").numpy()], folds, params.seed)
    chunks = [write_fold(train, rows, out_dir / "folds" / f"{k}").parent for k, rows in enumerate(held_out, 1)]
    catalogs = []
    for k, chunk in enumerate(chunks, 1):
        folder = out_dir / f"fold-{k}"
        features = folder / "features"
        link_split(split_file(features, "train"), [c for c in chunks if c != chunk])
        link_split(split_file(features, "val"), [paths.split("val")])
        link_split(split_file(features, "test"), [chunk])
        catalogs.append(replace(paths, features=features, model=folder / "model", metrics=folder / "metrics"))
    return catalogs, [len(rows) for rows in held_out]


def summarize(per_fold: list[dict]) -> dict[str, dict]:
    """Every numeric metric of every fold (latency left out: it times the machine, not the model) as
    {"mean", "std" (ddof=1), "folds": [...]}, the headline metrics first."""
    flat = [{k: v for k, v in numeric(m).items() if not k.startswith("latency.") and k != "n_test"} for m in per_fold]
    keys = [k for k in flat[0] if all(k in f for f in flat)]
    keys = [k for k in HEADLINE if k in keys] + [k for k in keys if k not in HEADLINE]
    summary = {}
    for k in keys:
        values = [f[k] for f in flat]
        summary[k] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)), "folds": values}
    return summary


def cross_validate(
    params: Params, paths: Catalog, out_dir: Path, folds: int | None = None, log_to_mlflow: bool = True
) -> dict:
    """Train and score K models on the folds of the featurized train split (models under `out_dir`);
    write `cv.json` and `cv.md` to `paths.metrics` (the gate reads `cv.json`) and, unless disabled,
    log a parent MLflow run `cv` with one nested run per fold. Returns the summary."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from mmops import stages
    from mmops.evaluate import evaluate
    from mmops.train import train
    from mmops.train.recipe import console

    folds = folds or params.cv.folds
    resolved = stages.resolved(params, paths)
    out_dir = Path(out_dir)
    catalogs, sizes = fold_catalogs(resolved, paths, folds, out_dir)
    per_fold = []
    columns = (TextColumn("[bold]cv[/] {task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"fold 1 of {folds}", total=folds)
        for k, fold in enumerate(catalogs, 1):
            progress.update(task, description=f"fold {k} of {folds} (scored on {sizes[k - 1]} rows)")
            train(resolved, fold)
            per_fold.append(evaluate(fold.model, fold.features, fold.metrics))
            progress.advance(task)
    summary = {
        "folds": folds, "seed": params.seed, "identity": training_identity(resolved, paths.features),
        "scored_on": "train split, fold k held out; epochs selected on the val split; test split untouched",
        "fold_rows": sizes, "metrics": summarize(per_fold), "per_fold": per_fold,
    }
    table = render_table(summary)
    paths.metrics.mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths.metrics / CV_MD, table)
    atomic_write_json(paths.metrics / CV_JSON, summary)
    if log_to_mlflow:
        summary["mlflow_run_id"] = log_cv(params, summary, table)
    return summary


def log_cv(params: Params, summary: dict, table: str) -> str:
    """One parent run `cv` (mean and std of every metric, the table) with a nested run per fold."""
    from mmops.registry.tracking import setup_mlflow

    mlflow = setup_mlflow(params.registry.experiment)
    with mlflow.start_run(run_name=f"cv-{summary['folds']}-fold") as parent:
        mlflow.set_tag("mmops.kind", "cv")
        mlflow.log_params({"folds": summary["folds"], "seed": summary["seed"]})
        mlflow.log_metrics({f"{k}.{stat}": s[stat] for k, s in summary["metrics"].items() for stat in ("mean", "std")})
        mlflow.log_text(table, CV_MD)
        for k, metrics in enumerate(summary["per_fold"], 1):
            with mlflow.start_run(run_name=f"fold-{k}", nested=True):
                mlflow.set_tag("mmops.kind", "cv-fold")
                mlflow.log_metrics(numeric(metrics))
    return parent.info.run_id


def render_table(summary: dict) -> str:
    """Markdown: one row per metric, mean ± std then each fold."""
    k = summary["folds"]
    head = "| metric | mean ± std | " + " | ".join(f"fold {i}" for i in range(1, k + 1)) + " |"
    lines = [
        f"{k}-fold cross-validation (stratified, seed {summary['seed']}) on the train split: "
        f"{sum(summary['fold_rows'])} rows, {min(summary['fold_rows'])}-{max(summary['fold_rows'])} per fold; "
        "epochs selected on the val split; the test split is not used.",
        "", head, "|" + " --- |" * (k + 2),
    ]
    for key, s in summary["metrics"].items():
        folds = " | ".join(f"{v:.3f}" for v in s["folds"])
        lines.append(f"| {key} | {s['mean']:.3f} ± {s['std']:.3f} | {folds} |")
    return "\n".join(lines) + "\n"
