"""The modalities a sample may carry, in the order every table and batch lists them."""

from __future__ import annotations

from typing import Literal, get_args

Modality = Literal["text", "image", "audio"]
MODALITIES: tuple[Modality, ...] = get_args(Modality)
