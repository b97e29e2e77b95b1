"""Raw input -> tensors. One code path for training, evaluation and serving."""

from mmops.features.extract import FeatureExtractor, load_media_bytes

__all__ = ["FeatureExtractor", "load_media_bytes"]
