"""The model folder: the one format training writes and evaluation, registry and serving load.

    checkpoint.pt        fp32 state dict + params + classes        (or)
    checkpoint_int8.pt   the dynamic int8 variant of the same model
    base_weights.json    (optional) frozen pretrained tensors left out of the checkpoint, by sha256:
                         {"text": {"sha256", "file", "source", "prefix", "strip", "tensors"}}
    text_backbone/       the text encoder's config and tokenizer (weights live in the checkpoint)
    audio_backbone/      a Hugging Face audio encoder's config (weights live in the checkpoint)

`load_model_dir` reads either checkpoint through the same steps, so a variant decodes its inputs
exactly as the fp32 model does.

Frozen pretrained weights (a transformers backbone, a torchvision ResNet): a tensor of a frozen
encoder that is bit-identical to the pretrained safetensors file it was loaded from is not
stored; `base_weights.json` names that file by sha256, and loading fills the missing tensors from
the verified file (`mmops.models.pretrained.find_base_weights`). The registry stores each such
file once per content hash (its blob store), so a version costs its trained weights, not another
copy of MiniLM or a ResNet. The training-resume state never lives here (`Catalog.resume_state`).
"""

from __future__ import annotations

import copy
import json
import shutil
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mmops.atomic import atomic_path
from mmops.atomic import atomic_write_json
from mmops.catalog import AUDIO_BACKBONE, BASE_WEIGHTS, CHECKPOINT, INT8_CHECKPOINT, TEXT_BACKBONE
from mmops.config import Params
from mmops.features.extract import FeatureExtractor
from mmops.models import MultimodalClassifier, tokenizer_source
from mmops.models.pretrained import cache_blob, find_base_weights, weights_sha256

INT8_QUANTIZATION = "dynamic_int8_linear"


def export_text_backbone(model: MultimodalClassifier, params: Params, model_dir: Path) -> None:
    """Save the text encoder's config (when it has a transformer) and its tokenizer beside the checkpoint."""
    if "text" not in model.modalities:
        return
    from transformers import AutoTokenizer

    target = model_dir / TEXT_BACKBONE
    backbone = getattr(model.encoders["text"], "backbone", None)
    if backbone is not None:  # e.g. gru_text has no transformer config: the tokenizer alone
        backbone.config.save_pretrained(target)
    AutoTokenizer.from_pretrained(tokenizer_source(params.model)).save_pretrained(target)


def export_audio_backbone(model: MultimodalClassifier, model_dir: Path) -> None:
    """Save a Hugging Face audio encoder's config beside the checkpoint (weights live in it)."""
    backbone = getattr(model.encoders["audio"], "backbone", None) if "audio" in model.modalities else None
    if backbone is not None and hasattr(backbone, "config"):
        backbone.config.save_pretrained(model_dir / AUDIO_BACKBONE)


@dataclass
class LoadedModel:
    model: nn.Module
    extractor: FeatureExtractor
    params: Params
    classes: list[str]


def quantize_model(model: nn.Module) -> nn.Module:
    """A copy of `model` with every nn.Linear replaced by a dynamically quantised int8 Linear.

    `torch.ao.quantization.quantize_dynamic` still works in torch 2.13 but warns that it is
    deprecated in favour of torchao (whose int8 paths target GPUs); the warnings are silenced.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)


def is_int8_dir(model_dir: Path) -> bool:
    return (Path(model_dir) / INT8_CHECKPOINT).is_file()


def load_checkpoint(model_dir: Path, device: str = "cpu") -> dict:
    """The checkpoint dict of a model folder (fp32 or int8), tensors only (`weights_only`)."""
    name = INT8_CHECKPOINT if is_int8_dir(model_dir) else CHECKPOINT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # quantized tensors warn on load
        return torch.load(Path(model_dir) / name, map_location=device, weights_only=True)


def folder_params(ckpt: dict, model_dir: Path) -> Params:
    """The training params, with pretrained encoders pointed at the configs saved in the folder."""
    raw = copy.deepcopy(ckpt["params"])
    if "text" in raw["model"]["modalities"]:
        raw["model"]["text"]["options"]["pretrained"] = str(Path(model_dir) / TEXT_BACKBONE)
    if (Path(model_dir) / AUDIO_BACKBONE).is_dir():
        raw["model"]["audio"]["options"]["pretrained"] = str(Path(model_dir) / AUDIO_BACKBONE)
    return Params.model_validate(raw)


def _base_tensors(file: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(file))


def lean_checkpoint(model: nn.Module, state_dict: dict,
                    sources: dict[str, tuple[Path, str]] | None = None) -> tuple[dict, dict[str, dict]]:
    """`state_dict` without the frozen pretrained tensors (a transformers backbone, a torchvision
    ResNet: each encoder's `frozen_weights()`) that equal their file, and the `base_weights.json`
    entries that reference those files (by sha256). Weights from a sharded or pickle file, or
    trained, are stored in full (no entry).

    `sources`: modality -> (verified local file, path recorded as its source), for a model rebuilt
    from a folder (whose config names no weights file); default: the file the encoder loaded."""
    encoders = getattr(model, "encoders", {})
    state, bases = _copy_state(state_dict), {}
    for m, encoder in encoders.items():
        frozen = encoder.frozen_weights() if hasattr(encoder, "frozen_weights") else None
        if frozen is None:
            continue
        source = frozen.file if sources is None else (sources.get(m) or (None,))[0]
        if source is None:
            continue
        recorded = str(source) if sources is None else sources[m][1]
        prefix, strip = f"encoders.{m}.{frozen.attr}.", frozen.strip
        dropped = 0
        for key, base in _base_tensors(source).items():
            name = prefix + _strip(key, strip)
            value = state.get(name)
            if (isinstance(value, torch.Tensor) and not value.is_quantized and value.shape == base.shape
                    and value.dtype == base.dtype and torch.equal(value.detach().cpu(), base)):
                del state[name]
                dropped += 1
        if dropped:
            bases[m] = {"sha256": weights_sha256(source), "file": source.name, "source": recorded,
                        "prefix": prefix, "strip": strip, "tensors": dropped}
    return state, bases


def _copy_state(state_dict: dict) -> OrderedDict:
    """A shallow copy that keeps the `_metadata` (module versions) quantised modules load by."""
    state = OrderedDict(state_dict)
    if hasattr(state_dict, "_metadata"):
        state._metadata = state_dict._metadata
    return state


def _strip(key: str, prefix: str) -> str:
    return key[len(prefix) + 1:] if prefix and key.startswith(prefix + ".") else key


def write_base_weights(model_dir: Path, bases: dict[str, dict]) -> None:
    """Write (or, with no entries, remove) the folder's `base_weights.json`."""
    path = Path(model_dir) / BASE_WEIGHTS
    for entry in bases.values():  # the training path may go away: keep a verified copy per content hash
        if entry.get("source") and Path(entry["source"]).is_file():
            cache_blob(Path(entry["source"]), entry["sha256"])
    if bases:
        atomic_write_json(path, bases)
    else:
        path.unlink(missing_ok=True)


def read_base_weights(model_dir: Path) -> dict[str, dict]:
    """The folder's `base_weights.json` entries ({} for a self-contained folder)."""
    path = Path(model_dir) / BASE_WEIGHTS
    return json.loads(path.read_text()) if path.is_file() else {}


def with_base_weights(model_dir: Path, state_dict: dict, expected: set[str]) -> dict:
    """`state_dict` completed with the frozen tensors `base_weights.json` references, each read
    from a file whose sha256 was checked first; only keys in `expected` that are missing are filled."""
    bases = read_base_weights(model_dir)
    if not bases:
        return state_dict
    state = _copy_state(state_dict)
    for m, entry in bases.items():
        file = find_base_weights(entry["sha256"], entry.get("source"), f"{Path(model_dir) / BASE_WEIGHTS} [{m}]")
        for key, value in _base_tensors(file).items():
            name = entry["prefix"] + _strip(key, entry.get("strip", ""))
            if name in expected and name not in state:
                state[name] = value
    return state


def load_model_dir(model_dir: Path, device: str = "cpu") -> LoadedModel:
    """Rebuild the classifier (fp32, or int8: fp32 skeleton -> quantise -> int8 weights) and its
    feature extractor from a model folder."""
    ckpt = load_checkpoint(model_dir, device)
    params = folder_params(ckpt, model_dir)
    model = MultimodalClassifier(params.model, len(ckpt["classes"]), load_weights=False, features=params.features).eval()
    if ckpt.get("quantization") == INT8_QUANTIZATION:
        model = quantize_model(model)
    model.load_state_dict(with_base_weights(model_dir, ckpt["state_dict"], set(model.state_dict())))
    model.to(device).eval()
    extractor = FeatureExtractor.for_model(params.features, params.model)
    return LoadedModel(model, extractor, params, list(ckpt["classes"]))


def save_int8_dir(model_dir: Path, int8: nn.Module, out_dir: Path) -> Path:
    """A model folder for the int8 variant: `checkpoint_int8.pt` plus the fp32 folder's backbone configs."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = torch.load(Path(model_dir) / CHECKPOINT, map_location="cpu", weights_only=True)
    # the tensors quantisation leaves as they were (embeddings, LayerNorms) are referenced too
    sources = {m: (find_base_weights(e["sha256"], e.get("source"), f"{Path(model_dir) / BASE_WEIGHTS} [{m}]"),
                   e.get("source") or "") for m, e in read_base_weights(model_dir).items()}
    ckpt["state_dict"], bases = lean_checkpoint(int8, int8.state_dict(), sources)
    ckpt["quantization"] = INT8_QUANTIZATION
    with warnings.catch_warnings(), atomic_path(out_dir / INT8_CHECKPOINT) as tmp:
        warnings.simplefilter("ignore", UserWarning)
        torch.save(ckpt, tmp)
    for backbone in (TEXT_BACKBONE, AUDIO_BACKBONE):
        if (Path(model_dir) / backbone).is_dir():
            shutil.copytree(Path(model_dir) / backbone, out_dir / backbone, dirs_exist_ok=True)
    write_base_weights(out_dir, bases)
    return out_dir
