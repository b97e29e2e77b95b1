"""Helpers over nested dicts of tensors (a featurized batch, a modality's inputs, cached embeddings)."""

from __future__ import annotations

from typing import Any, Callable

import torch


def index(batch: Any, idx: torch.Tensor) -> Any:
    """Select rows `idx` from every tensor in a nested batch; lists are indexed too."""
    if isinstance(batch, torch.Tensor):
        return batch[idx]
    if isinstance(batch, dict):
        return {k: index(v, idx) for k, v in batch.items()}
    if isinstance(batch, list):
        return [batch[i] for i in idx.tolist()]
    return batch


def map_tensors(batch: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """`fn` on every tensor of a nested batch; anything else is returned as it is."""
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, dict):
        return {k: map_tensors(v, fn) for k, v in batch.items()}
    return batch


def to_device(batch: Any, device: torch.device) -> Any:
    return map_tensors(batch, lambda t: t.to(device, non_blocking=True))


def scatter_rows(batch: Any, idx: torch.Tensor, n: int) -> Any:
    """Every tensor's rows placed at `idx` among `n` zero rows."""

    def place(t: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((n, *t.shape[1:]), dtype=t.dtype)
        out[idx] = t
        return out

    return map_tensors(batch, place)


def concat(batches: list[dict]) -> dict:
    """Concatenate featurized batches along the first dimension."""
    first = batches[0]
    out: dict = {}
    for key, value in first.items():
        parts = [b[key] for b in batches]
        if isinstance(value, torch.Tensor):
            out[key] = torch.cat(parts)
        elif isinstance(value, dict):
            out[key] = concat(parts)
        elif isinstance(value, list):
            out[key] = [x for p in parts for x in p]
    return out
