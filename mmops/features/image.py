"""Images: decode with PIL, grayscale, resize, normalise."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from mmops.config import ImageFeatures


class ImageTransform:
    """Image bytes -> tensor of shape (1, size, size), normalised."""

    def __init__(self, cfg: ImageFeatures) -> None:
        self.cfg = cfg

    def __call__(self, data: bytes) -> torch.Tensor:
        with Image.open(io.BytesIO(data)) as img:
            gray = img.convert("L").resize((self.cfg.size, self.cfg.size), Image.Resampling.BILINEAR)
            pixels = np.asarray(gray, dtype=np.float32) / 255.0
        return ((torch.from_numpy(pixels) - self.cfg.mean) / self.cfg.std).unsqueeze(0)
