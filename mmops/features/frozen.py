"""Frozen-encoder embeddings of a sharded split, one layer file per shard, cached by content.

A frozen encoder gives the same output every epoch and every run, so training reads its output
instead of its inputs: per shard, the embeddings of every frozen modality are computed once
(`with_frozen_embeddings` on that shard alone: memory bounded by a shard) and stored under a key
that hashes the shard's bytes and the encoders' frozen identity. A different model, other weights
or other rows miss; nothing is ever stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from rich.progress import Progress
from safetensors import safe_open

from mmops.features.shards import Layer, SplitView, write_shard
from mmops.models.classifier import MultimodalClassifier, with_frozen_embeddings
from mmops.models.embedding_cache import cache_key, encoder_fingerprint


def frozen_modalities(model: MultimodalClassifier, present: Iterable[str], skip: Iterable[str] = ()) -> list[str]:
    """The modalities whose encoder is frozen (their output can be cached), less `skip`."""
    return sorted(m for m, enc in model.encoders.items()
                  if getattr(enc, "frozen", False) and m in set(present) and m not in set(skip))


def _layer_key(model: MultimodalClassifier, modalities: list[str], shard_sha256: str, device: torch.device) -> str:
    """The encoders' frozen identity (the log-mel window too: the pooled output depends on it) x the shard."""
    identity = "|".join(f"{m}:{encoder_fingerprint(model.encoders[m])}" for m in modalities)
    return cache_key(f"{identity}|window {model.window_frames}", shard_sha256, device)


def _readable(path: Path) -> bool:
    try:
        with safe_open(str(path), framework="pt") as f:
            return bool(list(f.keys()))
    except Exception:  # noqa: BLE001  a torn or foreign file is recomputed, never trusted
        return False


def embedded_view(model: MultimodalClassifier, view: SplitView, cache_dir: Path, skip: Iterable[str] = ()) -> SplitView:
    """`view` with each frozen modality's inputs replaced by its frozen part's output (a layer
    per shard in `cache_dir`). Modalities in `skip` (augmented ones) keep their inputs."""
    keys = view.feature_keys
    modalities = frozen_modalities(model, {k.split(".")[0] for k in keys}, skip)
    if not modalities:
        return view
    device = next(model.parameters()).device
    files = []
    for entry in view.index["shards"]:
        key = _layer_key(model, modalities, entry["sha256"], device)
        files.append(Path(cache_dir) / key[:2] / f"{key}.safetensors")
    missing = [n for n, path in enumerate(files) if not _readable(path)]
    with Progress(transient=True, disable=not missing) as progress:
        task = progress.add_task(f"embed {'+'.join(modalities)} ({len(missing)} shards)", total=len(missing))
        for number in missing:
            embedded = with_frozen_embeddings(model, view.shard(number))
            write_shard(files[number], {m: embedded[m] for m in modalities})
            progress.advance(task)
    return view.with_layer(Layer(tuple(modalities), tuple(files)))


