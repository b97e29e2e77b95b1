"""Text: a transformers tokenizer, padded to a fixed length; a longer text keeps its head or its tail.

A text is first cut to `MAX_TEXT_CHARS` characters at the end it would lose anyway: far more than
any `max_length` of tokens needs, and it bounds the cost of scrubbing and tokenizing.
"""

from __future__ import annotations

import torch
from transformers import AutoTokenizer

from mmops.config import TextFeatures
from mmops.data.pii import scrub_texts

MAX_TEXT_CHARS = 100_000


class TextTokenizer:
    """Strings -> {"input_ids", "attention_mask"} of shape (N, max_length)."""

    def __init__(self, cfg: TextFeatures, tokenizer_path: str) -> None:
        self.cfg = cfg
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        self.tokenizer.truncation_side = "left" if cfg.truncation == "tail" else "right"
        self.max_length = cfg.resolved_max_length()

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        keep = slice(-MAX_TEXT_CHARS, None) if self.cfg.truncation == "tail" else slice(MAX_TEXT_CHARS)
        texts = [t[keep] for t in texts]
        if self.cfg.scrub_pii:  # saved with the model's params, so serving scrubs exactly as training did
            texts = scrub_texts(texts)
        enc = self.tokenizer(
            texts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
