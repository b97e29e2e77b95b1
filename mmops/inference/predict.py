"""Raw rows or featurized splits -> logits, labels and probabilities.

The one prediction path: evaluation, the gate's re-scoring, quantisation, the pyfunc, `mmops
predict` and `mmops serve` all come through here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mmops.config import MODALITIES
from mmops.data.manifest import MEDIA_COLUMNS, read_manifest
from mmops.features.extract import featurize_frame
from mmops.features.shards import SplitView
from mmops.models.batch import index, to_device
from mmops.inference.model_dir import (
    CHECKPOINT,
    INT8_CHECKPOINT,
    LoadedModel,
    load_model_dir,
)
from mmops.inference.onnx_model import OnnxModel, is_onnx_dir, load_onnx_dir
from mmops.inference.verify import load_registered, resolve_models_uri
from mmops.models.classifier import with_frozen_embeddings
from mmops.models.mode import ensure_eval

# Serving defaults, here so that the server (`ServeSettings`) and the evaluate stage's served-path
# latency (`mmops.evaluate.latency`) agree on them without evaluate importing the serving layer.
SERVE_MAX_BATCH_SIZE = 32  # rows per model call


def serve_torch_threads() -> int:
    """Intra-op threads of a serving model call: half the cores, 1..4 (oversubscribed OpenMP is very slow)."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


@torch.no_grad()
def predict_logits(model, data: dict, device, batch_size: int, drop=frozenset(), autocast=nullcontext) -> torch.Tensor:
    """Logits for a whole featurized split, in batches, in eval mode, on CPU at the end."""
    ensure_eval(model)
    data = with_frozen_embeddings(model, data, batch_size)
    n = len(data["labels"]) if "labels" in data else next(iter(data["present"].values())).shape[0]
    out = []
    for start in range(0, n, batch_size):
        batch = to_device(index(data, torch.arange(start, min(start + batch_size, n))), device)
        with autocast():
            out.append(model(batch, drop=drop).float().cpu())
    return torch.cat(out)


def split_logits(
    model, split: SplitView, device, batch_size: int, drops=(frozenset(),), autocast=nullcontext
) -> dict[frozenset, torch.Tensor]:
    """Logits of a sharded split for each modality set in `drops` (dropped at inference), read one
    shard at a time: memory is bounded by a shard, whatever the split's size."""
    out: dict[frozenset, list[torch.Tensor]] = {drop: [] for drop in drops}
    for shard in split.shards():
        shard = with_frozen_embeddings(ensure_eval(model), shard, batch_size)  # once per shard, for every pass
        for drop in drops:
            out[drop].append(predict_logits(model, shard, device, batch_size, drop, autocast))
    return {drop: torch.cat(parts) for drop, parts in out.items()}


def model_logits(loaded: LoadedModel, batch: dict, batch_size: int) -> torch.Tensor:
    """The model call on a featurized batch: the PyTorch forward, or the ONNX Runtime session of an
    ONNX variant (`mmops.inference.onnx_model`); everything before and after it is shared."""
    if isinstance(loaded.model, OnnxModel):
        return loaded.model.logits(batch, batch_size)
    return predict_logits(loaded.model, batch, torch.device("cpu"), batch_size)


def predict_frame(loaded: LoadedModel, frame: pd.DataFrame, batch_size: int = 64) -> pd.DataFrame:
    """Raw rows -> labels and probabilities, through the training preprocessing.

    Columns `text`, `image`, `audio` (any may be absent); an image or audio cell holds a file path
    or raw bytes; empty or None means missing. Output: `label` and one probability column per class.
    """
    frame = frame.reset_index(drop=True)
    for column in MODALITIES:
        if column not in frame:
            frame[column] = None
    frame["text"] = frame["text"].map(lambda t: "" if t is None or (isinstance(t, float) and t != t) else t)
    batch = featurize_frame(frame, loaded.extractor, base_dir=None)
    probs = torch.softmax(model_logits(loaded, batch, batch_size), dim=1)
    out = pd.DataFrame(probs.numpy(), columns=loaded.classes)
    out.insert(0, "label", [loaded.classes[i] for i in probs.argmax(1).tolist()])
    return out


def predict_rows(loaded: LoadedModel, rows: list[dict], version: str | None = None) -> list[dict]:
    """Rows as the server hands them to the model -> one prediction dict per row.

    A row is {"text": str | None, "image": bytes | None, "audio": bytes | None} (a path works too);
    None or empty means missing. Out: {"label", "probabilities": {class: p}, "model_version"}.
    This is one serving model call (`mmops serve` runs it per micro-batch): decode, featurize, the
    text encoder, the forward pass and the answer's shape, so the evaluate stage times it as is.
    """
    frame = pd.DataFrame(rows, columns=list(MODALITIES))
    out = predict_frame(loaded, frame, batch_size=max(len(rows), 1))
    classes = list(loaded.classes)
    probs = out[classes].to_numpy(dtype=np.float64)
    return [
        {"label": str(label), "probabilities": dict(zip(classes, map(float, p))), "model_version": version}
        for label, p in zip(out["label"], probs)
    ]


def warm_up(loaded: LoadedModel) -> None:
    """One forward on a text-only row, so the first real request does not pay for lazy init."""
    predict_frame(loaded, pd.DataFrame({"text": ["warm up"], "image": [None], "audio": [None]}))


def load_model_uri(uri: str, dst_path: Path | None = None) -> LoadedModel:
    """A local model folder (fp32, int8 or ONNX), or a registered `models:/` URI verified against the
    digests recorded at registration (`mmops.inference.verify`); downloads go to `dst_path`."""
    local = Path(uri)
    if (local / CHECKPOINT).is_file() or (local / INT8_CHECKPOINT).is_file():
        return load_model_dir(local)
    if is_onnx_dir(local):
        return load_onnx_dir(local)
    import tempfile

    from mlflow import MlflowClient

    client = MlflowClient()
    name, version = resolve_models_uri(uri, client)
    dst = Path(dst_path) if dst_path else Path(tempfile.mkdtemp(prefix="mmops-model-"))
    return load_registered(name, version, dst, client)


def predict_manifest(
    data_dir: Path, loaded: LoadedModel, batch_size: int = 64, progress: Callable[[int, int], None] | None = None
) -> pd.DataFrame:
    """Every manifest row of a dataset folder -> `sample_id`, `label` and one `prob_<class>` per class.

    Media paths resolve against `data_dir`; `progress(rows_done, rows_total)` is called after each batch.
    """
    manifest = read_manifest(data_dir)
    if "sample_id" not in manifest:
        raise FileNotFoundError(f"{data_dir}: the manifest has no sample_id column")
    rows = pd.DataFrame({m: manifest[m] if m in manifest else "" for m in MODALITIES})
    for column in MEDIA_COLUMNS:
        rows[column] = [str((Path(data_dir) / p).resolve()) if p else "" for p in rows[column]]
    parts = []
    for start in range(0, len(rows), batch_size):
        parts.append(predict_frame(loaded, rows.iloc[start : start + batch_size], batch_size=batch_size))
        if progress is not None:
            progress(min(start + batch_size, len(rows)), len(rows))
    pred = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["label", *loaded.classes])
    out = pd.DataFrame({"sample_id": manifest["sample_id"].to_numpy(), "label": pred["label"].to_numpy()})
    for c in loaded.classes:
        out[f"prob_{c}"] = pred[c].to_numpy()
    return out
