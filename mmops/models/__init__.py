"""Models: encoder and fusion registries and the multimodal classifier.

Importing this package imports every component module, so their `@register` decorators fill
`ENCODERS` and `FUSIONS` (`mmops.models.components`) before anything looks a name up.
"""

from __future__ import annotations

from mmops.config import ModelConfig
from mmops.models import encoders, fusion, vision  # noqa: F401  (registers the components)
from mmops.models.classifier import MultimodalClassifier
from mmops.models.components import ENCODERS, FUSIONS
from mmops.models.pretrained import resolve_pretrained

__all__ = ["ENCODERS", "FUSIONS", "MultimodalClassifier", "audio_input", "tokenizer_source"]


def audio_input(cfg: ModelConfig) -> str:
    """What the features stage stores for the audio encoder: "log_mel" or "waveform"."""
    if "audio" not in cfg.active():
        return "log_mel"
    return getattr(ENCODERS.config_for(cfg.audio.name), "input_feature", "log_mel")


def tokenizer_source(cfg: ModelConfig) -> str | None:
    """Where the text tokenizer comes from: the text encoder's pretrained folder."""
    if "text" not in cfg.active():
        return None
    options = ENCODERS.config_for(cfg.text.name).model_validate(cfg.text.options)
    pretrained = getattr(options, "pretrained", None)
    return resolve_pretrained(pretrained) if pretrained else None
