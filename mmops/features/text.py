"""Text: a transformers tokenizer, padded to a fixed length; a longer text keeps its head or its tail."""

from __future__ import annotations

import torch
from transformers import AutoTokenizer

from mmops.config import TextFeatures
from mmops.features.privacy import scrub_texts


class TextTokenizer:
    """Strings -> {"input_ids", "attention_mask"} of shape (N, max_length)."""

    def __init__(self, cfg: TextFeatures, tokenizer_path: str) -> None:
        self.cfg = cfg
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        self.tokenizer.truncation_side = "left" if cfg.truncation == "tail" else "right"
        self.max_length = cfg.resolved_max_length()

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if self.cfg.scrub_pii:  # saved with the model's params, so serving scrubs exactly as training did
            texts = scrub_texts(texts)
        enc = self.tokenizer(
            texts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
