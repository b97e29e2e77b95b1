"""The training reference of a registered model: what `mmops monitor` compares the prediction log with.

Saved at registration (`save_reference`, one call in `mmops.registry.register`) as one Parquet file,
`monitor/reference.parquet`, in the MLflow run of the model version; the version's tag
`monitor.reference` names it (`runs:/<run id>/monitor/reference.parquet`), so any process that
reaches the tracking server fetches it (`load_reference`). One row per item, `part` says which:

    features     SUMMARY_COLUMNS (`mmops.monitor.summary`, as the log holds them) of a seeded sample of at
                 most `monitor.drift.reference_rows` training rows (the features' frozen split)
    predictions  `label`: the model's predicted label of each test row, from the evaluate stage's
                 confusion.csv (predicted through `predict_frame` when that file is missing)

The Parquet schema metadata `mmops.reference` records the sample, its seed and the seconds it took:
the cost is one read and summary of each sampled file (bounded by `reference_rows`), no model call.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mmops.catalog import Catalog
from mmops.config.monitor import DriftConfig
from mmops.data.manifest import MEDIA_COLUMNS, read_manifest
from mmops.errors import UserError
from mmops.monitor.summary import SUMMARY_COLUMNS, summarize

FEATURES, PREDICTIONS = "features", "predictions"
ARTIFACT_DIR, FILE = "monitor", "reference.parquet"
REFERENCE_TAG = "monitor.reference"  # on the model version: runs:/<run id>/monitor/reference.parquet
CONFUSION_CSV = "confusion.csv"  # actual,predicted per test row (mmops.evaluate.plots.write_plots)
META_KEY = b"mmops.reference"


class MissingReference(UserError, LookupError):
    """A model version without a saved reference; the message says how to get one."""


def split_rows(data_dir: Path, splits_csv: Path, split: str) -> pd.DataFrame:
    """The rows of one frozen split (splits.csv of the features) with absolute media paths."""
    df = read_manifest(data_dir).drop(columns=["split"], errors="ignore")
    df = df.merge(pd.read_csv(splits_csv, dtype=str), on="sample_id")
    rows = df[df["split"] == split].reset_index(drop=True)
    root = Path(data_dir).resolve()
    for column in MEDIA_COLUMNS:
        if column in rows:
            rows[column] = [str(root / p) if p else "" for p in rows[column]]
    return rows


def predicted_labels(paths: Catalog, max_rows: int, seed: int) -> tuple[list[str], str]:
    """(predicted label of each test row, where they came from)."""
    confusion = paths.metrics / CONFUSION_CSV
    if confusion.exists():
        return list(pd.read_csv(confusion, dtype=str, keep_default_na=False)["predicted"]), f"evaluate ({CONFUSION_CSV})"
    from mmops.inference.model_dir import load_model_dir
    from mmops.inference.predict import predict_frame

    test = split_rows(paths.data, paths.splits_csv, "test")
    test = test.sample(n=min(max_rows, len(test)), random_state=seed).sort_index()
    return list(predict_frame(load_model_dir(paths.model), test)["label"]), "predict_frame on the test split"


def build_reference(paths: Catalog, cfg: DriftConfig, seed: int) -> pd.DataFrame:
    """The reference of the model in `paths.model`, trained on `paths.data` (see the module doc)."""
    start = time.perf_counter()
    train = split_rows(paths.data, paths.splits_csv, "train")
    sample = train.sample(n=min(cfg.reference_rows, len(train)), random_state=seed).sort_index()
    features = pd.DataFrame([summarize(r) for r in sample.to_dict("records")], columns=list(SUMMARY_COLUMNS))
    labels, source = predicted_labels(paths, cfg.reference_rows, seed)
    frame = pd.concat([
        features.assign(part=FEATURES, label=""),  # summary rows carry no label
        pd.DataFrame({"part": PREDICTIONS, "label": labels}),
    ], ignore_index=True)[["part", "label", *SUMMARY_COLUMNS]]
    frame.attrs = {"train_rows": len(train), "sampled_rows": len(sample), "seed": seed,
                   "predictions": len(labels), "predictions_from": source,
                   "seconds": round(time.perf_counter() - start, 3)}
    return frame


def write_reference(frame: pd.DataFrame, path: Path) -> Path:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(frame.attrs).encode()})
    pq.write_table(table, path)
    return path


def read_reference(path: Path) -> pd.DataFrame:
    table = pq.read_table(path)
    frame = table.to_pandas()
    frame.attrs = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
    return frame


def split_reference(reference: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary features of training inputs, predicted labels of the test split)."""
    return (reference[reference["part"] == FEATURES].reset_index(drop=True),
            reference[reference["part"] == PREDICTIONS].reset_index(drop=True))


def save_reference(client, name: str, version: str, run_id: str, paths: Catalog, cfg: DriftConfig, seed: int) -> dict:
    """Build the reference and store it with model version `version` (nothing when it has one); its metadata."""
    tags = client.get_model_version(name, version).tags
    if REFERENCE_TAG in tags:
        return {"reused": tags[REFERENCE_TAG]}
    frame = build_reference(paths, cfg, seed)
    with tempfile.TemporaryDirectory(prefix="mmops-reference-") as tmp:
        client.log_artifact(run_id, str(write_reference(frame, Path(tmp) / FILE)), ARTIFACT_DIR)
    for key, value in frame.attrs.items():
        client.set_model_version_tag(name, version, f"monitor.reference_{key}", str(value))
    client.set_model_version_tag(name, version, REFERENCE_TAG, f"runs:/{run_id}/{ARTIFACT_DIR}/{FILE}")
    return frame.attrs


def load_reference(client, name: str, version: str) -> pd.DataFrame:
    """The reference stored with model version `version` (metadata in `.attrs`)."""
    uri = client.get_model_version(name, version).tags.get(REFERENCE_TAG)
    if not uri:
        raise MissingReference(
            f"{name} v{version} has no monitoring reference (version tag {REFERENCE_TAG}): it was registered "
            "before references were saved. Register the model again (`mmops register`) to save one.")
    run_id, _, artifact = uri.removeprefix("runs:/").partition("/")
    with tempfile.TemporaryDirectory(prefix="mmops-reference-") as tmp:
        return read_reference(Path(client.download_artifacts(run_id, artifact, tmp)))
