"""The ONNX variant of a model folder, run by ONNX Runtime: only the model call differs.

    model.onnx     the whole fused model (text encoder included): featurized inputs -> logits
    onnx.json      its inputs, opset, the params and classes, and the sha256 of model.onnx
    text_backbone/ audio_backbone/   the tokenizer and configs, as in the fp32 folder

Raw rows are decoded and featurized by the same `FeatureExtractor` as the PyTorch model
(`mmops.inference.predict`); `OnnxModel.logits` replaces the forward pass. The graph's inputs are
the featurized batch flattened (`flat_inputs`): `present_<modality>` (bool), `text_input_ids` and
`text_attention_mask` (int64, token columns trimmed to the longest present text, as the PyTorch
text encoder trims them), `image`, `audio_mel` and `audio_frames`.

Nothing unverified runs: `load_onnx_dir` checks model.onnx against the sha256 in onnx.json before
ONNX Runtime sees it (a registered folder is checked as a whole first, `mmops.inference.verify`),
and refuses a graph that points at external data files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from mmops.catalog import CHECKPOINT
from mmops.data.hashing import file_sha256
from mmops.errors import UserError
from mmops.features.extract import FeatureExtractor
from mmops.inference.model_dir import LoadedModel, folder_params

ONNX_FILE = "model.onnx"
ONNX_META = "onnx.json"
ONNX_FORMAT = "mmops-onnx/1"
LOGITS = "logits"


class OnnxModelRefused(UserError, RuntimeError):
    """An ONNX model folder whose graph does not match its recorded sha256 (or is malformed); not run."""


def is_onnx_dir(model_dir: Path) -> bool:
    d = Path(model_dir)
    return (d / ONNX_FILE).is_file() and (d / ONNX_META).is_file() and not (d / CHECKPOINT).is_file()


def flat_inputs(batch: dict, modalities: list[str]) -> dict[str, np.ndarray]:
    """A featurized batch -> the graph's named inputs (see the module docstring)."""
    out: dict[str, np.ndarray] = {}
    for m in modalities:
        present = batch["present"][m].bool()
        out[f"present_{m}"] = present.numpy()
        value = batch[m]
        items = sorted(value.items()) if isinstance(value, dict) else [("", value)]
        for key, tensor in items:
            name = f"{m}_{key}" if key else m
            if tensor.dtype in (torch.bool,):
                out[name] = tensor.numpy()
            elif tensor.is_floating_point():
                out[name] = tensor.float().numpy()
            else:
                out[name] = tensor.long().numpy()
    if "text_attention_mask" in out:  # drop all-padding columns, as the PyTorch text encoder does
        mask = out["text_attention_mask"][out["present_text"]]
        longest = max(int(mask.sum(1).max()) if len(mask) else 1, 1)
        for name in ("text_input_ids", "text_attention_mask"):
            out[name] = np.ascontiguousarray(out[name][:, :longest])
    return out


def default_providers() -> list[str]:
    """CUDA when this onnxruntime build has it (onnxruntime-gpu), always CPU as the fallback."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OnnxModel:
    """An ONNX Runtime session over a verified model.onnx; `logits(batch)` is the model call."""

    def __init__(self, path: Path, modalities: list[str], input_names: list[str],
                 providers: list[str] | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()  # as many as the torch call
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers or default_providers())
        self.providers = self.session.get_providers()
        self.modalities = list(modalities)
        # the graph's own inputs: the export drops what the model never reads (e.g. audio_frames when
        # a clip is one window long)
        self.input_names = [i.name for i in self.session.get_inputs()]
        if unknown := sorted(set(self.input_names) - set(input_names)):
            raise OnnxModelRefused(f"{path}: inputs {unknown} are not among the recorded {input_names}")

    def logits(self, batch: dict, batch_size: int | None = None) -> torch.Tensor:
        """Logits (N, n_classes) of a featurized batch, `batch_size` rows per session run."""
        from mmops.models.batch import index

        n = len(next(iter(batch["present"].values())))
        step = batch_size or max(n, 1)
        out = []
        for start in range(0, n, step):
            part = batch if step >= n else index(batch, torch.arange(start, min(start + step, n)))
            feeds = flat_inputs(part, self.modalities)
            out.append(torch.from_numpy(self.session.run([LOGITS], {k: feeds[k] for k in self.input_names})[0]))
        return torch.cat(out) if out else torch.zeros(0)

    def eval(self) -> "OnnxModel":  # the model-call API callers share with nn.Module
        return self


def read_onnx_meta(model_dir: Path) -> dict:
    meta = json.loads((Path(model_dir) / ONNX_META).read_text())
    if meta.get("format") != ONNX_FORMAT:
        raise OnnxModelRefused(f"{model_dir / ONNX_META}: format {meta.get('format')!r}, expected {ONNX_FORMAT!r}")
    return meta


def check_onnx_file(model_dir: Path, meta: dict) -> Path:
    """model.onnx, once its sha256 equals the one recorded in onnx.json and it reads no external data."""
    path = Path(model_dir) / ONNX_FILE
    actual, expected = file_sha256(path), str(meta.get("onnx_sha256", ""))
    if actual != expected:
        raise OnnxModelRefused(
            f"{path}: sha256 {actual[:12]}… does not match the {expected[:12] or '(none)'}… recorded in "
            f"{ONNX_META} at export; the graph was changed and is not run"
        )
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    external = [t.name for t in graph.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise OnnxModelRefused(f"{path}: tensors {external[:3]} point at external files; only a self-contained graph is run")
    return path


def load_onnx_dir(model_dir: Path, providers: list[str] | None = None, threads: int | None = None) -> LoadedModel:
    """The ONNX variant folder as a `LoadedModel` whose `model` is an `OnnxModel` (same extractor,
    params and classes as the PyTorch model it was exported from)."""
    meta = read_onnx_meta(model_dir)
    path = check_onnx_file(model_dir, meta)
    params = folder_params({"params": meta["params"]}, model_dir)
    runner = OnnxModel(path, list(params.model.active()), meta["inputs"], providers, threads)
    extractor = FeatureExtractor.for_model(params.features, params.model)
    return LoadedModel(runner, extractor, params, list(meta["classes"]))
