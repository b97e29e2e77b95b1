"""Helpers over nested dicts of tensors (a featurized batch)."""

from __future__ import annotations

from typing import Any

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


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


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
