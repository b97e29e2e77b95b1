"""A dynamic int8 CPU variant: every `nn.Linear` (text transformer, projections, head) quantised.

Weights are stored as int8; activations are quantised on the fly at inference. Convolutions,
embeddings and LayerNorms stay fp32. The variant is compared with the fp32 model on the test
split in the same process: accuracy drop, serialized size ratio and batch-1 latency ratio
(int8 ÷ fp32, timed interleaved so load on the machine hits both alike).

`torch.ao.quantization.quantize_dynamic` still ships and works in torch 2.13 but warns that it is
deprecated in favour of torchao, whose int8 paths target GPUs; its warnings are silenced here.
"""

from __future__ import annotations

import io
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn

from mmops.catalog import split_file
from mmops.config import QuantizeConfig
from mmops.features.shards import SplitView
from mmops.evaluate.metrics import classification_metrics
from mmops.models.batch import index
from mmops.inference.model_dir import (
    LoadedModel,
    load_model_dir,
    quantize_model,
    save_int8_dir,
)
from mmops.inference.predict import predict_logits, split_logits

LATENCY_SAMPLES = 40
LATENCY_BATCH = 64
LATENCY_BATCH_REPEATS = 5


class QuantizeReport(BaseModel):
    """fp32 vs dynamic-int8 on the same test split, measured in one process."""

    n_test: int
    accuracy_fp32: float
    accuracy_int8: float
    accuracy_drop: float
    macro_f1_fp32: float
    macro_f1_int8: float
    max_accuracy_drop: float
    size_fp32_bytes: int
    size_int8_bytes: int
    size_ratio: float
    latency_fp32_p50_ms: float
    latency_int8_p50_ms: float
    latency_ratio: float
    latency_batch: int
    latency_fp32_batch_ms: float
    latency_int8_batch_ms: float
    latency_batch_ratio: float
    torch_threads: int
    accepted: bool

    def markdown(self, version: str | None = None) -> str:
        verdict = "registered" if self.accepted else "not registered"
        where = f" as v{version}" if version else ""
        rows = [
            f"## Dynamic int8 variant: {verdict}{where} (accuracy drop {self.accuracy_drop:+.4f}, "
            f"limit {self.max_accuracy_drop})",
            "",
            "| | fp32 | int8 | int8 ÷ fp32 |",
            "| --- | --- | --- | --- |",
            f"| test accuracy | {self.accuracy_fp32:.4f} | {self.accuracy_int8:.4f} | drop {self.accuracy_drop:+.4f} |",
            f"| test macro-F1 | {self.macro_f1_fp32:.4f} | {self.macro_f1_int8:.4f} | |",
            f"| weights (bytes) | {self.size_fp32_bytes} | {self.size_int8_bytes} | {self.size_ratio:.3f} |",
            f"| latency p50, batch 1 (ms) | {self.latency_fp32_p50_ms:.2f} | {self.latency_int8_p50_ms:.2f} | "
            f"{self.latency_ratio:.3f} |",
            f"| latency p50 per sample, batch {self.latency_batch} (ms) | {self.latency_fp32_batch_ms:.2f} | "
            f"{self.latency_int8_batch_ms:.2f} | {self.latency_batch_ratio:.3f} |",
            "",
            f"n_test {self.n_test}, torch threads {self.torch_threads}; latency is the whole forward pass "
            "(text encoder included) on this machine.",
        ]
        return "\n".join(rows) + "\n"


def serialized_bytes(model: nn.Module) -> int:
    """Size of the model's state dict as `torch.save` writes it."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def accuracy_f1(model: nn.Module, test: SplitView, batch_size: int) -> tuple[float, float]:
    """Accuracy and macro-F1 of `model` on a sharded split (argmax of its logits)."""
    preds = split_logits(model, test, torch.device("cpu"), batch_size)[frozenset()].argmax(1).numpy()
    scores = classification_metrics(test.column("labels").numpy(), preds)
    return scores["accuracy"], scores["macro_f1"]


def interleaved_latency(a: nn.Module, b: nn.Module, test: dict, batch: int = 1,
                        repeats: int = LATENCY_SAMPLES) -> tuple[float, float]:
    """p50 per-sample ms of `a` and `b` at `batch`, alternating call by call after a warm-up."""
    cpu = torch.device("cpu")
    total = len(test["labels"])
    batch = min(batch, total)
    for model in (a, b):
        predict_logits(model, index(test, torch.arange(0, batch)), cpu, batch)
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(repeats):
        lo = (i * batch) % (total - batch + 1)
        chunk = index(test, torch.arange(lo, lo + batch))
        for model, out in ((a, times[0]), (b, times[1])):
            start = time.perf_counter()
            predict_logits(model, chunk, cpu, batch)
            out.append((time.perf_counter() - start) * 1000 / batch)
    return float(np.percentile(times[0], 50)), float(np.percentile(times[1], 50))


def compare(loaded: LoadedModel, int8: nn.Module, features_dir: Path, cfg: QuantizeConfig,
            batch_size: int = 128) -> QuantizeReport:
    """Score fp32 and int8 on the test split of `features_dir` in this process; accept if the drop is
    within limits. Latency is timed on the rows of the split's first shard."""
    split = SplitView(split_file(features_dir, "test"))
    acc32, f1_32 = accuracy_f1(loaded.model, split, batch_size)
    acc8, f1_8 = accuracy_f1(int8, split, batch_size)
    size32, size8 = serialized_bytes(loaded.model), serialized_bytes(int8)
    test = split.shard(0)
    lat32, lat8 = interleaved_latency(loaded.model, int8, test)
    batch = min(LATENCY_BATCH, len(test["labels"]))
    bat32, bat8 = interleaved_latency(loaded.model, int8, test, batch, LATENCY_BATCH_REPEATS)
    drop = acc32 - acc8
    return QuantizeReport(
        n_test=len(split), accuracy_fp32=acc32, accuracy_int8=acc8, accuracy_drop=round(drop, 6),
        macro_f1_fp32=f1_32, macro_f1_int8=f1_8, max_accuracy_drop=cfg.max_accuracy_drop,
        size_fp32_bytes=size32, size_int8_bytes=size8, size_ratio=size8 / size32,
        latency_fp32_p50_ms=lat32, latency_int8_p50_ms=lat8, latency_ratio=lat8 / lat32 if lat32 else float("nan"),
        latency_batch=batch, latency_fp32_batch_ms=bat32, latency_int8_batch_ms=bat8,
        latency_batch_ratio=bat8 / bat32 if bat32 else float("nan"),
        torch_threads=torch.get_num_threads(), accepted=drop <= cfg.max_accuracy_drop + 1e-12,
    )


def quantize_and_compare(model_dir: Path, features_dir: Path, cfg: QuantizeConfig, out_dir: Path) -> QuantizeReport:
    """Quantise the model in `model_dir`, write the int8 folder to `out_dir`, and compare it with fp32."""
    loaded = load_model_dir(model_dir)
    save_int8_dir(model_dir, quantize_model(loaded.model), out_dir)
    return compare(loaded, load_model_dir(out_dir).model, features_dir, cfg)  # what gets registered
