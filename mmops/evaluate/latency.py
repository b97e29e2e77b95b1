"""Latency of the served path, the numbers `gate.ceilings` `latency.*` rules read.

`latency.batch_1.*` and `latency.batch_<B>.*` (B = the serving `max_batch_size`) time one call of
`mmops.inference.predict.predict_rows`, the very function a `mmops serve` model call runs: raw
rows of the frozen test split in (text string, image and audio file bytes, as the server hands
them to the model after reading the request), predictions out. Each timing therefore includes
media decoding, feature extraction, tokenisation, the text (and every other) encoder with nothing
precomputed, the forward pass, the softmax and the answer's dicts. Not included: HTTP, JSON and
base64 parsing, the server's input checks and the micro-batcher's wait (`/metrics` has those).

Keys (all milliseconds unless named otherwise; metrics.json holds numbers only):
    latency.batch_1.{p50_ms,p95_ms}                   one request of one row
    latency.batch_<B>.{p50_ms,p95_ms}                 one request (model call) of B rows
    latency.batch_<B>.{per_sample_p50_ms,per_sample_p95_ms}   the same divided by B
    latency.*.n_timed                                 timed requests
    latency.torch_threads, latency.serve_batch_size   how it ran (the serving defaults)
    latency.model_only.batch_*.*                      the model's forward alone on the stored
                                                      test features, frozen embeddings
                                                      precomputed (diagnostic; no default rule)

Cost is bounded, whatever the size of the test split: a warm-up, `SINGLE_REQUESTS` requests of one
row and `BATCH_REQUESTS` requests of B rows (rows are reused when the split is smaller).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mmops.config import MODALITIES
from mmops.data.manifest import MEDIA_COLUMNS, read_manifest
from mmops.inference.model_dir import LoadedModel
from mmops.inference.predict import predict_logits, predict_rows, serve_torch_threads
from mmops.models.batch import index

SINGLE_REQUESTS = 50
BATCH_REQUESTS = 8
WARM_UP_REQUESTS = 3
MODEL_ONLY_BATCHES = 8


def frozen_test_rows(data_dir: Path, splits_csv: Path) -> pd.DataFrame:
    """The frozen test split as raw rows with absolute media paths (what a client would send).

    Every modality column is present: one the manifest lacks is empty in every row (missing).
    """
    df = read_manifest(data_dir).drop(columns=["split"], errors="ignore")
    df = df.merge(pd.read_csv(splits_csv, dtype=str), on="sample_id")
    test = df[df["split"] == "test"].reset_index(drop=True)
    test = test.assign(**{m: "" for m in MODALITIES if m not in test})
    root = Path(data_dir).resolve()
    for column in MEDIA_COLUMNS:
        test[column] = [str(root / p) if p else "" for p in test[column]]
    return test


def request_rows(frame: pd.DataFrame, n: int) -> list[dict]:
    """The first `n` rows of `frame` as the server hands them to the model: text str or None,
    image and audio as file bytes or None (files are read here, outside any timing)."""
    rows = []
    for record in frame.head(n).to_dict("records"):
        text = record.get("text") or None
        media = {m: Path(record[m]).read_bytes() if record.get(m) else None for m in MEDIA_COLUMNS}
        rows.append({"text": text, **media})
    return rows


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with `n` intra-op threads (as the serving model thread does), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ms_stats(ms: list[float], prefix: str = "") -> dict[str, float]:
    arr = np.asarray(ms, dtype=np.float64)
    return {f"{prefix}p50_ms": float(np.percentile(arr, 50)), f"{prefix}p95_ms": float(np.percentile(arr, 95))}


def _cycle(rows: list, start: int, n: int) -> list:
    return [rows[(start + i) % len(rows)] for i in range(n)]


def time_requests(call, rows: list[dict], batch: int, requests: int) -> list[float]:
    """Milliseconds of `requests` calls of `call(rows)`, each on the next `batch` rows (cycling)."""
    out = []
    for r in range(requests):
        chunk = _cycle(rows, r * batch, batch)
        start = time.perf_counter()
        call(chunk)
        out.append((time.perf_counter() - start) * 1000)
    return out


def served_latency(
    loaded: LoadedModel, rows: list[dict], batch_size: int, threads: int | None = None,
    single: int = SINGLE_REQUESTS, batches: int = BATCH_REQUESTS,
) -> dict:
    """p50/p95 ms of `predict_rows` (the serving model call) at batch 1 and at `batch_size`."""
    if not rows:
        raise ValueError("no test rows to time the served path on")
    threads = threads or serve_torch_threads()

    def call(chunk: list[dict]) -> None:
        predict_rows(loaded, chunk)

    with torch_threads(threads):
        time_requests(call, rows, batch_size, 1)  # warm-up: lazy init, allocator, the biggest shapes
        time_requests(call, rows, 1, WARM_UP_REQUESTS)
        one = time_requests(call, rows, 1, single)
        many = time_requests(call, rows, batch_size, batches)
    per_sample = [ms / batch_size for ms in many]
    return {
        "torch_threads": threads,
        "serve_batch_size": batch_size,
        "batch_1": {**ms_stats(one), **ms_stats(one, "per_sample_"), "n_timed": len(one)},
        f"batch_{batch_size}": {**ms_stats(many), **ms_stats(per_sample, "per_sample_"), "n_timed": len(many)},
    }


def model_only_latency(
    model, test: dict, device, batch_size: int, threads: int | None = None,
    single: int = SINGLE_REQUESTS, batches: int = MODEL_ONLY_BATCHES,
) -> dict:
    """p50/p95 ms of `predict_logits` on stored test features (frozen embeddings as `test` holds
    them): the model's share of the served latency. Diagnostic only."""
    n = len(test["labels"])
    sample_rows = list(range(n))

    def call(chunk: list[int]) -> None:
        predict_logits(model, index(test, torch.tensor(chunk)), device, len(chunk))

    with torch_threads(threads or serve_torch_threads()):
        time_requests(call, sample_rows, batch_size, 1)
        one = time_requests(call, sample_rows, 1, single)
        many = time_requests(call, sample_rows, batch_size, batches)
    per_sample = [ms / batch_size for ms in many]
    return {
        "batch_1": {**ms_stats(one), "n_timed": len(one)},
        f"batch_{batch_size}": {**ms_stats(many), **ms_stats(per_sample, "per_sample_"), "n_timed": len(many)},
    }


def latency_note(metrics: dict) -> str:
    """A Markdown paragraph for gate.md: what the `latency.*` values measured."""
    lat = metrics.get("latency") or {}
    if "batch_1" not in lat:
        return ""
    b = int(lat.get("serve_batch_size", 0))
    many = lat.get(f"batch_{b}", {})
    lines = [
        "## Latency (what `latency.*` rules read)",
        "",
        "The served path on the machine that ran `evaluate`: raw test rows (text, image and audio file bytes) "
        "through `mmops.inference.predict.predict_rows`, the function each serving model call runs: decode, "
        "featurize, every encoder (text encoder included, nothing precomputed), forward, softmax. "
        "HTTP, request checks and the micro-batcher's wait are not included. "
        f"{int(lat.get('torch_threads', 0))} torch threads (the serving default).",
        "",
        "| request | p50 ms | p95 ms | p50 ms per sample | requests timed |",
        "| --- | --- | --- | --- | --- |",
        f"| batch 1 | {lat['batch_1']['p50_ms']:.2f} | {lat['batch_1']['p95_ms']:.2f} | "
        f"{lat['batch_1']['p50_ms']:.2f} | {lat['batch_1']['n_timed']} |",
    ]
    if many:
        lines.append(f"| batch {b} | {many['p50_ms']:.2f} | {many['p95_ms']:.2f} | "
                     f"{many['per_sample_p50_ms']:.2f} | {many['n_timed']} |")
    model_only = lat.get("model_only", {}).get("batch_1")
    if model_only:
        lines += ["", f"For comparison, the model's forward alone on stored features (frozen embeddings "
                      f"precomputed; `latency.model_only.*`, no default rule): batch 1 p50 "
                      f"{model_only['p50_ms']:.2f} ms."]
    return "\n".join(lines) + "\n"
