"""Nested dicts -> flat `a.b.c` keys (for MLflow params/metrics and report tables)."""

from __future__ import annotations


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
