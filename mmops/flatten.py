"""Nested dicts -> flat `a.b.c` keys (for MLflow params/metrics, report tables and gate rules)."""

from __future__ import annotations

from typing import Callable


def flatten(d: dict, prefix: str = "", leaf: Callable[[dict], bool] | None = None) -> dict:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`; a nested dict for which `leaf(value)` holds stays one value."""
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not (leaf and leaf(value)):
            out.update(flatten(value, f"{name}.", leaf))
        else:
            out[name] = value
    return out
