"""Rows of raw inputs -> a batch of tensors; the same code serves training and the pyfunc."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Iterable

import torch

from mmops.config import FeaturesConfig
from mmops.features.audio import LogMel
from mmops.features.image import ImageTransform
from mmops.features.text import TextTokenizer

Batch = dict[str, Any]


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
    """

    def __init__(
        self,
        cfg: FeaturesConfig,
        modalities: Iterable[str],
        tokenizer_path: str | None,
        cache_dir: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.modalities = list(modalities)
        self.text = TextTokenizer(cfg.text, tokenizer_path) if "text" in self.modalities else None
        self.image = ImageTransform(cfg.image)
        self.audio = LogMel(cfg.audio)
        self.cache_dir = cache_dir
        self._cfg_key = {
            "image": json.dumps(cfg.image.model_dump(), sort_keys=True),
            "audio": json.dumps(cfg.audio.model_dump(), sort_keys=True),
        }

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
        for name, items, fn, shape in (
            ("image", images, self.image, self.image_shape()),
            ("audio", audios, self.audio, self.audio_shape()),
        ):
            if name not in self.modalities:
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
