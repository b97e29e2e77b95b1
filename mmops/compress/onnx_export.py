"""An ONNX Runtime variant: the whole fused model (the frozen text encoder included) exported to ONNX.

The export traces `OnnxGraph`: the classifier's forward written without shapes that depend on the
data, so one graph serves any batch. Every modality's encoder runs on every row, and a row where
the modality is missing takes the learned "missing" embedding (`torch.where`), which is what the
PyTorch forward computes row by row. Audio encodes every window a clip of the stored length can
have (`pooled_windows_static`); the text encoder sees token columns trimmed to the longest present
text by the caller (`mmops.inference.onnx_model.flat_inputs`), as the PyTorch encoder trims them;
frozen token states are rounded to float16 exactly where the PyTorch path caches them so.

The variant is compared with the PyTorch model on the test split in the same process: the largest
absolute difference of any class probability (and of any logit), label agreement, accuracy, file
size and the batch-1 / batch-64 latency of the model call (ONNX ÷ PyTorch, timed interleaved). It
is registered only when the probability difference is within `onnx.max_abs_diff`. Encoders that
cannot be traced this way (a GRU over packed sequences, a waveform transformer that trims its
input by value) make the export fail; the report says why and nothing is registered.

Exported with the TorchScript-based exporter (`dynamo=False`): it needs no onnxscript and keeps
the graph's batch and token axes dynamic through `dynamic_axes`.
"""

from __future__ import annotations

import copy
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn

from mmops.atomic import atomic_path, atomic_write_json
from mmops.catalog import AUDIO_BACKBONE, CHECKPOINT, TEXT_BACKBONE, split_file
from mmops.compress.quantize import LATENCY_BATCH, LATENCY_BATCH_REPEATS, LATENCY_SAMPLES, serialized_bytes
from mmops.config import OnnxConfig
from mmops.data.hashing import file_sha256
from mmops.evaluate.metrics import classification_metrics
from mmops.features.shards import SplitView
from mmops.inference.model_dir import LoadedModel, load_model_dir
from mmops.inference.onnx_model import (
    LOGITS,
    ONNX_FILE,
    ONNX_FORMAT,
    ONNX_META,
    OnnxModel,
    flat_inputs,
    load_onnx_dir,
)
from mmops.inference.predict import predict_logits, split_logits
from mmops.models.batch import index, map_tensors


class OnnxExportUnsupported(ValueError):
    """The model has a part the ONNX export cannot trace faithfully."""


class OnnxGraph(nn.Module):
    """The classifier's eval forward over `flat_inputs` names -> logits, with no data-dependent shapes."""

    def __init__(self, model: nn.Module, input_names: list[str]) -> None:
        super().__init__()
        self.model, self.input_names = model.eval(), list(input_names)
        for m, encoder in model.encoders.items():
            if m == "text" and not hasattr(encoder, "embed_tokens"):
                raise OnnxExportUnsupported(f"text encoder {type(encoder).__name__}: no traceable embed_tokens")
            if m == "audio" and "audio_waveform" in self.input_names:
                raise OnnxExportUnsupported(f"audio encoder {type(encoder).__name__} on waveforms trims by value")

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        x = dict(zip(self.input_names, tensors))
        tokens = []
        for m in self.model.modalities:
            encoded = self.model.projections[m](self.features(m, x))
            missing = self.model.missing[m].to(encoded.dtype).expand_as(encoded)
            tokens.append(torch.where(x[f"present_{m}"][:, None], encoded, missing))
        return self.model.head(self.model.fusion(torch.stack(tokens, dim=1)))

    def features(self, m: str, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """Modality `m`'s encoder output for every row, as the PyTorch path computes it for present rows."""
        encoder = self.model.encoders[m]
        if m == "text":
            embedded = encoder.embed_tokens(x["text_input_ids"], x["text_attention_mask"])
            if getattr(encoder, "frozen", False):  # what `with_frozen_embeddings` hands the trainable part
                embedded = map_tensors(embedded, lambda t: t if t.dtype == torch.float16 else t.float())
            return encoder.pool(embedded)
        if m == "audio":
            return self.model.encode(m, {"mel": x["audio_mel"], "frames": x["audio_frames"]})
        return self.model.encode(m, x[m])


def export_onnx(loaded: LoadedModel, model_dir: Path, example: dict, cfg: OnnxConfig, out_dir: Path) -> Path:
    """Write the ONNX variant folder of the model in `model_dir` (loaded as `loaded`) to `out_dir`;
    `example` is a featurized batch (any rows) that fixes the input names and dtypes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    modalities = list(loaded.model.modalities)
    feeds = flat_inputs(example, modalities)
    names = list(feeds)
    graph = OnnxGraph(copy.deepcopy(loaded.model).float().eval(), names)
    dynamic = {name: {0: "batch"} for name in names} | {LOGITS: {0: "batch"}}
    for name in ("text_input_ids", "text_attention_mask"):
        if name in dynamic:
            dynamic[name][1] = "tokens"
    args = tuple(torch.from_numpy(feeds[n]) for n in names)
    with warnings.catch_warnings(), torch.no_grad(), atomic_path(out_dir / ONNX_FILE) as tmp:
        warnings.simplefilter("ignore")  # tracer and deprecation warnings: the comparison is the check
        torch.onnx.export(graph, args, str(tmp), dynamo=False, input_names=names, output_names=[LOGITS],
                          dynamic_axes=dynamic, opset_version=cfg.opset, do_constant_folding=True)
    ckpt = torch.load(Path(model_dir) / CHECKPOINT, map_location="cpu", weights_only=True)
    for backbone in (TEXT_BACKBONE, AUDIO_BACKBONE):
        if (Path(model_dir) / backbone).is_dir():
            shutil.copytree(Path(model_dir) / backbone, out_dir / backbone, dirs_exist_ok=True)
    atomic_write_json(out_dir / ONNX_META, {
        "format": ONNX_FORMAT, "onnx_sha256": file_sha256(out_dir / ONNX_FILE), "opset": cfg.opset,
        "inputs": names, "output": LOGITS, "classes": list(ckpt["classes"]), "params": ckpt["params"],
        "exporter": f"torch.onnx.export(dynamo=False), torch {torch.__version__}",
    })
    return out_dir


class OnnxReport(BaseModel):
    """PyTorch vs ONNX Runtime on the same test split, measured in one process."""

    n_test: int
    max_abs_diff: float  # the limit
    exported: bool
    error: str | None = None
    max_abs_diff_probs: float | None = None
    max_abs_diff_logits: float | None = None
    label_agreement: float | None = None
    accuracy_torch: float | None = None
    accuracy_onnx: float | None = None
    size_torch_bytes: int | None = None
    size_onnx_bytes: int | None = None
    size_ratio: float | None = None
    latency_torch_p50_ms: float | None = None
    latency_onnx_p50_ms: float | None = None
    latency_ratio: float | None = None
    latency_batch: int | None = None
    latency_torch_batch_ms: float | None = None
    latency_onnx_batch_ms: float | None = None
    latency_batch_ratio: float | None = None
    opset: int
    providers: list[str] = []
    threads: int
    accepted: bool

    def markdown(self, version: str | None = None) -> str:
        verdict = "registered" if self.accepted else "not registered"
        where = f" as v{version}" if version else ""
        if not self.exported:
            return f"## ONNX variant: {verdict} (export failed: {self.error})\n"
        return "\n".join([
            f"## ONNX variant: {verdict}{where} (max |Δp| {self.max_abs_diff_probs:.2e}, limit {self.max_abs_diff:g})",
            "",
            "| | PyTorch | ONNX Runtime | ONNX ÷ PyTorch |",
            "| --- | --- | --- | --- |",
            f"| test accuracy | {self.accuracy_torch:.4f} | {self.accuracy_onnx:.4f} | labels agree {self.label_agreement:.4f} |",
            f"| max abs difference | | probabilities {self.max_abs_diff_probs:.2e}, logits {self.max_abs_diff_logits:.2e} | |",
            f"| model bytes | {self.size_torch_bytes} | {self.size_onnx_bytes} | {self.size_ratio:.3f} |",
            f"| model call p50, batch 1 (ms) | {self.latency_torch_p50_ms:.2f} | {self.latency_onnx_p50_ms:.2f} | "
            f"{self.latency_ratio:.3f} |",
            f"| model call p50 per sample, batch {self.latency_batch} (ms) | {self.latency_torch_batch_ms:.2f} | "
            f"{self.latency_onnx_batch_ms:.2f} | {self.latency_batch_ratio:.3f} |",
            "",
            f"n_test {self.n_test}, opset {self.opset}, providers {', '.join(self.providers)}, {self.threads} threads; "
            "the model call on featurized rows (text encoder included), on this machine.",
        ]) + "\n"


def interleaved_calls(a: Callable[[dict], object], b: Callable[[dict], object], rows: dict, batch: int = 1,
                      repeats: int = LATENCY_SAMPLES) -> tuple[float, float]:
    """p50 per-sample ms of the calls `a` and `b` on `batch` rows of `rows`, alternating after a warm-up."""
    total = len(rows["labels"])
    batch = min(batch, total)
    first = index(rows, torch.arange(0, batch))
    a(first), b(first)
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(repeats):
        lo = (i * batch) % (total - batch + 1)
        chunk = index(rows, torch.arange(lo, lo + batch))
        for call, out in ((a, times[0]), (b, times[1])):
            start = time.perf_counter()
            call(chunk)
            out.append((time.perf_counter() - start) * 1000 / batch)
    return float(np.percentile(times[0], 50)), float(np.percentile(times[1], 50))


def compare(loaded: LoadedModel, onnx: OnnxModel, onnx_file: Path, features_dir: Path, cfg: OnnxConfig,
            batch_size: int = 64, timed: bool = True) -> OnnxReport:
    """Score PyTorch and ONNX Runtime on the test split of `features_dir`; accept if every probability is
    within `cfg.max_abs_diff`. Latency is timed on the rows of the split's first shard (unless not `timed`)."""
    cpu = torch.device("cpu")
    split = SplitView(split_file(features_dir, "test"))
    torch_logits = split_logits(loaded.model, split, cpu, batch_size)[frozenset()]
    onnx_logits = torch.cat([onnx.logits(shard, batch_size) for shard in split.shards()])
    probs_t, probs_o = torch.softmax(torch_logits, 1), torch.softmax(onnx_logits, 1)
    labels = split.column("labels").numpy()
    pred_t, pred_o = probs_t.argmax(1).numpy(), probs_o.argmax(1).numpy()
    diff_p = float((probs_t - probs_o).abs().max()) if len(labels) else 0.0
    test = split.shard(0)
    torch_call = lambda rows: predict_logits(loaded.model, rows, cpu, len(rows["labels"]))  # noqa: E731
    batch = min(LATENCY_BATCH, len(test["labels"]))
    nan = float("nan")
    lat_t, lat_o = interleaved_calls(torch_call, onnx.logits, test) if timed else (nan, nan)
    bat_t, bat_o = interleaved_calls(torch_call, onnx.logits, test, batch, LATENCY_BATCH_REPEATS) if timed else (nan, nan)
    size_t, size_o = serialized_bytes(loaded.model), onnx_file.stat().st_size
    return OnnxReport(
        n_test=len(labels), max_abs_diff=cfg.max_abs_diff, exported=True,
        max_abs_diff_probs=diff_p, max_abs_diff_logits=float((torch_logits - onnx_logits).abs().max()) if len(labels) else 0.0,
        label_agreement=float((pred_t == pred_o).mean()) if len(labels) else 1.0,
        accuracy_torch=classification_metrics(labels, pred_t)["accuracy"],
        accuracy_onnx=classification_metrics(labels, pred_o)["accuracy"],
        size_torch_bytes=size_t, size_onnx_bytes=size_o, size_ratio=size_o / size_t,
        latency_torch_p50_ms=lat_t, latency_onnx_p50_ms=lat_o, latency_ratio=lat_o / lat_t if lat_t else float("nan"),
        latency_batch=batch, latency_torch_batch_ms=bat_t, latency_onnx_batch_ms=bat_o,
        latency_batch_ratio=bat_o / bat_t if bat_t else float("nan"),
        opset=cfg.opset, providers=onnx.providers, threads=torch.get_num_threads(),
        accepted=diff_p <= cfg.max_abs_diff,
    )


def export_and_compare(model_dir: Path, features_dir: Path, cfg: OnnxConfig, out_dir: Path) -> OnnxReport:
    """Export the model in `model_dir` to an ONNX variant folder `out_dir` and compare it with PyTorch.
    An export that fails is a report that is not accepted (with the reason), not an error."""
    loaded = load_model_dir(model_dir)
    split = SplitView(split_file(features_dir, "test"))
    try:
        export_onnx(loaded, model_dir, split.rows(torch.arange(min(2, len(split)))), cfg, out_dir)
        onnx = load_onnx_dir(out_dir)  # what gets registered, loaded the way serving loads it
    except (OnnxExportUnsupported, RuntimeError, ValueError, TypeError, NotImplementedError) as err:
        message = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:500]
        return OnnxReport(n_test=len(split), max_abs_diff=cfg.max_abs_diff, exported=False, error=message,
                          opset=cfg.opset, threads=torch.get_num_threads(), accepted=False)
    return compare(loaded, onnx.model, Path(out_dir) / ONNX_FILE, features_dir, cfg)
