"""Raw input -> tensors. One code path for training, evaluation and serving.

The names below load on first use, so that `mmops.features.media` (bounded decoding, no torch)
imports light: the prediction log's writer process uses only that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmops.features.extract import FeatureExtractor, load_media_bytes

__all__ = ["FeatureExtractor", "load_media_bytes"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mmops.features import extract

        return getattr(extract, name)
    raise AttributeError(f"module 'mmops.features' has no attribute {name!r}")
