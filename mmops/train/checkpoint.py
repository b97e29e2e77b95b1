"""The model folder: `checkpoint.pt` + `text_backbone/` (config and tokenizer, no weights)
+ `audio_backbone/` (config only) for a Hugging Face audio encoder.

It is self-contained: the pyfunc, evaluation and serving all load a model through
`load_model_dir`, so they share one preprocessing path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mmops.config import Params
from mmops.features.extract import FeatureExtractor
from mmops.models import MultimodalClassifier, tokenizer_source

CHECKPOINT = "checkpoint.pt"
TEXT_BACKBONE = "text_backbone"
AUDIO_BACKBONE = "audio_backbone"


def export_text_backbone(model: MultimodalClassifier, params: Params, model_dir: Path) -> None:
    """Save the text encoder's config and tokenizer beside the checkpoint (weights live in it)."""
    if "text" not in model.modalities:
        return
    from transformers import AutoTokenizer

    target = model_dir / TEXT_BACKBONE
    model.encoders["text"].backbone.config.save_pretrained(target)
    AutoTokenizer.from_pretrained(tokenizer_source(params.model)).save_pretrained(target)


def export_audio_backbone(model: MultimodalClassifier, model_dir: Path) -> None:
    """Save a Hugging Face audio encoder's config beside the checkpoint (weights live in it)."""
    backbone = getattr(model.encoders["audio"], "backbone", None) if "audio" in model.modalities else None
    if backbone is not None and hasattr(backbone, "config"):
        backbone.config.save_pretrained(model_dir / AUDIO_BACKBONE)


@dataclass
class LoadedModel:
    model: MultimodalClassifier
    extractor: FeatureExtractor
    params: Params
    classes: list[str]


def load_model_dir(model_dir: Path, device: str = "cpu") -> LoadedModel:
    """Rebuild the trained classifier and its feature extractor from a model folder."""
    ckpt = torch.load(Path(model_dir) / CHECKPOINT, map_location=device, weights_only=True)
    raw = ckpt["params"]
    if "text" in raw["model"]["modalities"]:
        raw["model"]["text"]["options"]["pretrained"] = str(Path(model_dir) / TEXT_BACKBONE)
    if (Path(model_dir) / AUDIO_BACKBONE).is_dir():
        raw["model"]["audio"]["options"]["pretrained"] = str(Path(model_dir) / AUDIO_BACKBONE)
    params = Params.model_validate(raw)
    model = MultimodalClassifier(params.model, len(ckpt["classes"]), load_weights=False)
    model.load_state_dict(ckpt["state_dict"])
    model.to(device).eval()
    extractor = FeatureExtractor.for_model(params.features, params.model)
    return LoadedModel(model, extractor, params, list(ckpt["classes"]))
