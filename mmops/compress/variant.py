"""A compressed variant (distilled student, pruned copy) against its fp32 source, on the same test split.

The figures the int8 comparison reports (mmops/compress/quantize.py, whose helpers this reuses):
accuracy drop, serialized size ratio and p50 latency ratios at batch 1 and 64 (timed interleaved
through the shared prediction path), plus what a registered version stores: the model folder's
bytes (frozen pretrained weights are referenced by sha256, not stored) and the same folder's
checkpoint gzipped, where zeros left by pruning show.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import torch
from pydantic import BaseModel

from mmops.catalog import CHECKPOINT, split_file
from mmops.compress.quantize import LATENCY_BATCH, LATENCY_BATCH_REPEATS, accuracy_f1, interleaved_latency, serialized_bytes
from mmops.features.shards import SplitView
from mmops.inference.model_dir import LoadedModel


def folder_bytes(model_dir: Path) -> int:
    """Bytes of every file in a model folder (what a registered version stores)."""
    return sum(p.stat().st_size for p in Path(model_dir).rglob("*") if p.is_file())


def gzip_bytes(path: Path) -> int:
    """Bytes of `path` gzipped (level 6): zeros in the weights compress, dense values barely do."""
    return len(gzip.compress(Path(path).read_bytes(), compresslevel=6))


class VariantReport(BaseModel):
    """fp32 vs one compressed variant on the same test split, measured in one process."""

    variant: str  # "distilled", "pruned"
    title: str
    n_test: int
    accuracy_fp32: float
    accuracy_variant: float
    accuracy_drop: float
    macro_f1_fp32: float
    macro_f1_variant: float
    max_accuracy_drop: float
    size_fp32_bytes: int
    size_variant_bytes: int
    size_ratio: float
    folder_fp32_bytes: int
    folder_variant_bytes: int
    folder_ratio: float
    gzip_fp32_bytes: int
    gzip_variant_bytes: int
    gzip_ratio: float
    latency_fp32_p50_ms: float
    latency_variant_p50_ms: float
    latency_ratio: float
    latency_batch: int
    latency_fp32_batch_ms: float
    latency_variant_batch_ms: float
    latency_batch_ratio: float
    torch_threads: int
    details: dict[str, float | int | str] = {}
    accepted: bool

    def markdown(self, version: str | None = None) -> str:
        verdict = "registered" if self.accepted else "not registered"
        where = f" as v{version}" if version else ""
        v = self.variant
        rows = [
            f"## {self.title}: {verdict}{where} (accuracy drop {self.accuracy_drop:+.4f}, limit {self.max_accuracy_drop})",
            "",
            f"| | fp32 | {v} | {v} ÷ fp32 |",
            "| --- | --- | --- | --- |",
            f"| test accuracy | {self.accuracy_fp32:.4f} | {self.accuracy_variant:.4f} | drop {self.accuracy_drop:+.4f} |",
            f"| test macro-F1 | {self.macro_f1_fp32:.4f} | {self.macro_f1_variant:.4f} | |",
            f"| weights, serialized (bytes) | {self.size_fp32_bytes} | {self.size_variant_bytes} | {self.size_ratio:.3f} |",
            f"| model folder (bytes) | {self.folder_fp32_bytes} | {self.folder_variant_bytes} | {self.folder_ratio:.3f} |",
            f"| folder checkpoint gzipped (bytes) | {self.gzip_fp32_bytes} | {self.gzip_variant_bytes} | {self.gzip_ratio:.3f} |",
            f"| latency p50, batch 1 (ms) | {self.latency_fp32_p50_ms:.2f} | {self.latency_variant_p50_ms:.2f} | "
            f"{self.latency_ratio:.3f} |",
            f"| latency p50 per sample, batch {self.latency_batch} (ms) | {self.latency_fp32_batch_ms:.2f} | "
            f"{self.latency_variant_batch_ms:.2f} | {self.latency_batch_ratio:.3f} |",
            "",
            f"n_test {self.n_test}, torch threads {self.torch_threads}; "
            + ", ".join(f"{k} {val}" for k, val in self.details.items())
            + ("; " if self.details else "")
            + "weights serialized: the whole state dict, frozen pretrained encoders included (what serving loads); "
            "model folder: what a version stores (frozen pretrained weights referenced by sha256).",
        ]
        return "\n".join(rows) + "\n"


def compare_variant(variant: str, title: str, fp32: LoadedModel, fp32_dir: Path, other: LoadedModel, other_dir: Path,
                    features_dir: Path, max_accuracy_drop: float, details: dict | None = None,
                    batch_size: int = 128) -> VariantReport:
    """Score both on the test split of `features_dir`, measure sizes and latency; accept if the drop is within limits."""
    split = SplitView(split_file(features_dir, "test"))
    acc32, f1_32 = accuracy_f1(fp32.model, split, batch_size)
    acc_v, f1_v = accuracy_f1(other.model, split, batch_size)
    size32, size_v = serialized_bytes(fp32.model), serialized_bytes(other.model)
    dir32, dir_v = folder_bytes(fp32_dir), folder_bytes(other_dir)
    gz32, gz_v = gzip_bytes(Path(fp32_dir) / CHECKPOINT), gzip_bytes(Path(other_dir) / CHECKPOINT)
    test = split.shard(0)
    lat32, lat_v = interleaved_latency(fp32.model, other.model, test)
    batch = min(LATENCY_BATCH, len(test["labels"]))
    bat32, bat_v = interleaved_latency(fp32.model, other.model, test, batch, LATENCY_BATCH_REPEATS)
    drop = acc32 - acc_v
    nan = float("nan")
    return VariantReport(
        variant=variant, title=title, n_test=len(split), accuracy_fp32=acc32, accuracy_variant=acc_v,
        accuracy_drop=round(drop, 6), macro_f1_fp32=f1_32, macro_f1_variant=f1_v, max_accuracy_drop=max_accuracy_drop,
        size_fp32_bytes=size32, size_variant_bytes=size_v, size_ratio=size_v / size32,
        folder_fp32_bytes=dir32, folder_variant_bytes=dir_v, folder_ratio=dir_v / dir32,
        gzip_fp32_bytes=gz32, gzip_variant_bytes=gz_v, gzip_ratio=gz_v / gz32,
        latency_fp32_p50_ms=lat32, latency_variant_p50_ms=lat_v, latency_ratio=lat_v / lat32 if lat32 else nan,
        latency_batch=batch, latency_fp32_batch_ms=bat32, latency_variant_batch_ms=bat_v,
        latency_batch_ratio=bat_v / bat32 if bat32 else nan, torch_threads=torch.get_num_threads(),
        details=details or {}, accepted=drop <= max_accuracy_drop + 1e-12,
    )
