"""Rows of raw inputs -> a batch of tensors; the same code serves training and the pyfunc."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import pandas as pd
import torch

from mmops.config import FeaturesConfig
from mmops.data.hashing import bytes_sha256
from mmops.data.tensor_store import cached_tensor
from mmops.features.audio import LogMel, Waveform
from mmops.features.image import ImageTransform
from mmops.models.batch import concat
from mmops.features.text import TextTokenizer

if TYPE_CHECKING:
    from mmops.config import ModelConfig

Batch = dict[str, Any]
CHUNK = 256  # rows featurized at a time
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

    Images: (N, C, size, size), C = `cfg.image.channels`. Audio is stored as the audio encoder
    takes it (`audio_input`), the whole clip up to `cfg.audio.clip_seconds()`: `"log_mel"`,
    {"mel": (N, 1, n_mels, frames) zero-padded, "frames": (N,) frames that hold signal}; or
    `"waveform"`, {"waveform": (N, samples) zero-padded, "length": (N,)}. The model cuts windows
    of `window_seconds()` out of a log-mel clip (`mmops.models.windows`).
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
            "audio": json.dumps({**cfg.audio.model_dump(), "layout": "mel+frames"}, sort_keys=True),
            "waveform": json.dumps({**cfg.audio.model_dump(), "input": "waveform"}, sort_keys=True),
        }

    @classmethod
    def for_model(cls, cfg: FeaturesConfig, model: "ModelConfig", cache_dir: Path | None = None) -> "FeatureExtractor":
        """The extractor a model config needs: its tokenizer, and the audio input its encoder takes."""
        from mmops.models import audio_input, tokenizer_source

        return cls(cfg, model.active(), tokenizer_source(model), cache_dir, audio_input=audio_input(model))

    def image_shape(self) -> tuple[int, ...]:
        return (self.image.channels, self.image.size, self.image.size)

    def audio_shape(self) -> tuple[int, ...]:
        return (1, self.cfg.audio.n_mels, self.audio.frames)

    def row_bytes(self) -> int:
        """Bytes one featurized row takes (float32 media, int64 tokens): what sizes a shard."""
        total = 0
        if "image" in self.modalities:
            total += 4 * math.prod(self.image_shape())
        if "audio" in self.modalities:
            total += 4 * (self.waveform.n_samples if self.audio_input == "waveform" else math.prod(self.audio_shape()))
        if "text" in self.modalities:
            total += 2 * 8 * self.cfg.text.resolved_max_length()
        return total + 64

    def __call__(self, texts: list[Any], images: list[bytes | None], audios: list[bytes | None]) -> Batch:
        batch: Batch = {"present": {}}
        if "text" in self.modalities:
            clean = ["" if is_missing(t) else str(t) for t in texts]
            batch["text"] = self.text(clean)
            batch["present"]["text"] = torch.tensor([bool(t.strip()) for t in clean], dtype=torch.bool)
        if "image" in self.modalities:
            batch["image"] = self._stack("image", images, self.image, self.image_shape())
        if "audio" in self.modalities:
            batch["audio"] = self._waveforms(audios) if self.audio_input == "waveform" else self._log_mels(audios)
        for m, items in (("image", images), ("audio", audios)):
            if m in self.modalities:
                batch["present"][m] = torch.tensor([d is not None for d in items], dtype=torch.bool)
        return batch

    def _stack(self, name: str, items: list[bytes | None], fn, shape: tuple[int, ...]) -> torch.Tensor:
        """(N, *shape): each present item's features, zeros where it is missing."""
        out = torch.zeros((len(items), *shape))
        for i, data in enumerate(items):
            if data is not None:
                out[i] = self._cached(name, data, fn)
        return out

    def _log_mels(self, items: list[bytes | None]) -> dict[str, torch.Tensor]:
        """{"mel": (N, 1, n_mels, frames) zero-padded, "frames": (N,)} (0 frames where missing)."""
        mel = torch.zeros((len(items), *self.audio_shape()))
        frames = torch.zeros(len(items), dtype=torch.long)
        for i, data in enumerate(items):
            if data is not None:
                clip = self._cached("audio", data, self.audio)
                mel[i], frames[i] = clip["mel"], clip["frames"]
        return {"mel": mel, "frames": frames}

    def _waveforms(self, items: list[bytes | None]) -> dict[str, torch.Tensor]:
        """{"waveform": (N, samples) zero-padded, "length": (N,)}."""
        wave = torch.zeros(len(items), self.waveform.n_samples)
        length = torch.zeros(len(items), dtype=torch.long)
        for i, data in enumerate(items):
            if data is not None:
                w = self._cached("waveform", data, self.waveform)
                wave[i, : len(w)] = w
                length[i] = len(w)
        return {"waveform": wave, "length": length}

    def _cached(self, modality: str, data: bytes, fn):
        if self.cache_dir is None:
            return fn(data)
        key = bytes_sha256(self._cfg_key[modality].encode() + data)
        return cached_tensor(self.cache_dir / modality, key, lambda: fn(data))


def featurize_frame(df: pd.DataFrame, extractor: FeatureExtractor, base_dir: Path | None, progress=None) -> dict:
    """Featurize manifest rows (paths relative to `base_dir`, or raw bytes) in chunks."""
    parts = []
    task = progress.add_task("featurize", total=len(df)) if progress else None
    for start in range(0, len(df), CHUNK):
        chunk = df.iloc[start : start + CHUNK]
        parts.append(
            extractor(
                list(chunk["text"]) if "text" in chunk else [""] * len(chunk),
                [load_media_bytes(v, base_dir) for v in chunk.get("image", [None] * len(chunk))],
                [load_media_bytes(v, base_dir) for v in chunk.get("audio", [None] * len(chunk))],
            )
        )
        if progress:
            progress.advance(task, len(chunk))
    return concat(parts)
