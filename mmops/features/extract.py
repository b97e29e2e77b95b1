"""Rows of raw inputs -> a batch of tensors; the same code serves training and the pyfunc."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import torch

from mmops.config import FeaturesConfig
from mmops.features.audio import LogMel, Waveform
from mmops.features.image import ImageTransform
from mmops.features.text import TextTokenizer

if TYPE_CHECKING:
    from mmops.config import ModelConfig

Batch = dict[str, Any]
AUDIO_INPUTS = ("log_mel", "waveform")


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, (str, bytes)) and len(value) == 0
    )


def load_media_bytes(value: Any, base_dir: Path | None = None) -> bytes | None:
    """A cell of the `image`/`audio` column -> file bytes; None when the modality is missing.

    A cell holds raw bytes or a path (relative to `base_dir` when given).
    """
    if is_missing(value):
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    path = Path(str(value))
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return path.read_bytes()


class FeatureExtractor:
    """Turns raw rows (text str, image bytes, audio bytes) into model-ready tensors.

    Media features are cached on disk keyed by the content hash of the file and the feature
    config, so a re-run of preprocessing only decodes what changed.

    Audio is stored as the audio encoder takes it (`audio_input`): `"log_mel"`, a tensor
    (N, 1, n_mels, frames); or `"waveform"`, {"waveform": (N, samples) zero-padded, "length": (N,)}.
    """

    def __init__(
        self,
        cfg: FeaturesConfig,
        modalities: Iterable[str],
        tokenizer_path: str | None,
        cache_dir: Path | None = None,
        audio_input: str = "log_mel",
    ) -> None:
        if audio_input not in AUDIO_INPUTS:
            raise ValueError(f"audio_input {audio_input!r}: choose one of {', '.join(AUDIO_INPUTS)}")
        self.cfg = cfg
        self.modalities = list(modalities)
        self.text = TextTokenizer(cfg.text, tokenizer_path) if "text" in self.modalities else None
        self.image = ImageTransform(cfg.image)
        self.audio = LogMel(cfg.audio)
        self.waveform = Waveform(cfg.audio)
        self.audio_input = audio_input
        self.cache_dir = cache_dir
        self._cfg_key = {
            "image": json.dumps(cfg.image.model_dump(), sort_keys=True),
            "audio": json.dumps(cfg.audio.model_dump(), sort_keys=True),
            "waveform": json.dumps({**cfg.audio.model_dump(), "input": "waveform"}, sort_keys=True),
        }

    @classmethod
    def for_model(cls, cfg: FeaturesConfig, model: "ModelConfig", cache_dir: Path | None = None) -> "FeatureExtractor":
        """The extractor a model config needs: its tokenizer, and the audio input its encoder takes."""
        from mmops.models import audio_input, tokenizer_source

        return cls(cfg, model.modalities, tokenizer_source(model), cache_dir, audio_input=audio_input(model))

    def image_shape(self) -> tuple[int, ...]:
        return (1, self.cfg.image.size, self.cfg.image.size)

    def audio_shape(self) -> tuple[int, ...]:
        return (1, self.cfg.audio.n_mels, self.audio.frames)

    def __call__(self, texts: list[Any], images: list[bytes | None], audios: list[bytes | None]) -> Batch:
        n = len(texts)
        batch: Batch = {"present": {}}
        if "text" in self.modalities:
            clean = ["" if is_missing(t) else str(t) for t in texts]
            batch["text"] = self.text(clean)
            batch["present"]["text"] = torch.tensor([bool(t.strip()) for t in clean], dtype=torch.bool)
        if "audio" in self.modalities and self.audio_input == "waveform":
            batch["audio"], batch["present"]["audio"] = self._waveforms(audios)
        for name, items, fn, shape in (
            ("image", images, self.image, self.image_shape()),
            ("audio", audios, self.audio, self.audio_shape()),
        ):
            if name not in self.modalities or name in batch:
                continue
            out = torch.zeros((n, *shape))
            present = torch.zeros(n, dtype=torch.bool)
            for i, data in enumerate(items):
                if data is not None:
                    out[i] = self._cached(name, data, fn)
                    present[i] = True
            batch[name] = out
            batch["present"][name] = present
        return batch

    def _waveforms(self, items: list[bytes | None]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Zero-padded waveforms (N, samples), their lengths (N,) and the presence mask."""
        wave = torch.zeros(len(items), self.waveform.n_samples)
        length = torch.zeros(len(items), dtype=torch.long)
        for i, data in enumerate(items):
            if data is not None:
                w = self._cached("waveform", data, self.waveform)
                wave[i, : len(w)] = w
                length[i] = len(w)
        present = torch.tensor([d is not None for d in items], dtype=torch.bool)
        return {"waveform": wave, "length": length}, present

    def _cached(self, modality: str, data: bytes, fn) -> torch.Tensor:
        if self.cache_dir is None:
            return fn(data)
        key = hashlib.sha256(self._cfg_key[modality].encode() + data).hexdigest()
        path = self.cache_dir / modality / key[:2] / f"{key}.pt"
        if path.exists():
            return torch.load(path, weights_only=True)
        tensor = fn(data)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(tensor, tmp)
        tmp.replace(path)
        return tensor
