"""The model folder: the one format training writes and evaluation, registry and serving load.

    checkpoint.pt        fp32 state dict + params + classes        (or)
    checkpoint_int8.pt   the dynamic int8 variant of the same model
    text_backbone/       the text encoder's config and tokenizer (weights live in the checkpoint)
    audio_backbone/      a Hugging Face audio encoder's config (weights live in the checkpoint)

`load_model_dir` reads either checkpoint through the same steps, so a variant decodes its inputs
exactly as the fp32 model does.
"""

from __future__ import annotations

import copy
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mmops.atomic import atomic_path
from mmops.catalog import AUDIO_BACKBONE, CHECKPOINT, INT8_CHECKPOINT, TEXT_BACKBONE
from mmops.config import Params
from mmops.features.extract import FeatureExtractor
from mmops.models import MultimodalClassifier, tokenizer_source

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


def load_model_dir(model_dir: Path, device: str = "cpu") -> LoadedModel:
    """Rebuild the classifier (fp32, or int8: fp32 skeleton -> quantise -> int8 weights) and its
    feature extractor from a model folder."""
    ckpt = load_checkpoint(model_dir, device)
    params = folder_params(ckpt, model_dir)
    model = MultimodalClassifier(params.model, len(ckpt["classes"]), load_weights=False, features=params.features).eval()
    if ckpt.get("quantization") == INT8_QUANTIZATION:
        model = quantize_model(model)
    model.load_state_dict(ckpt["state_dict"])
    model.to(device).eval()
    extractor = FeatureExtractor.for_model(params.features, params.model)
    return LoadedModel(model, extractor, params, list(ckpt["classes"]))


def save_int8_dir(model_dir: Path, int8: nn.Module, out_dir: Path) -> Path:
    """A model folder for the int8 variant: `checkpoint_int8.pt` plus the fp32 folder's backbone configs."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = torch.load(Path(model_dir) / CHECKPOINT, map_location="cpu", weights_only=True)
    ckpt["state_dict"] = int8.state_dict()
    ckpt["quantization"] = INT8_QUANTIZATION
    with warnings.catch_warnings(), atomic_path(out_dir / INT8_CHECKPOINT) as tmp:
        warnings.simplefilter("ignore", UserWarning)
        torch.save(ckpt, tmp)
    for backbone in (TEXT_BACKBONE, AUDIO_BACKBONE):
        if (Path(model_dir) / backbone).is_dir():
            shutil.copytree(Path(model_dir) / backbone, out_dir / backbone, dirs_exist_ok=True)
    return out_dir
