"""Windows over a stored log-mel clip: the model sees `window_seconds()` at a time.

A featurized clip is {"mel": (B, 1, n_mels, F), "frames": (B,)}: F frames cover `clip_seconds()`,
the first `frames` of them hold signal. Training encodes one random window per sample inside its
signal (torch's RNG); evaluation encodes every window (hop: half a window) and averages the
encoder outputs, so a cue late in a long clip counts. When F is the window (clip == window) the
mel goes to the encoder as it is.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from mmops.config import AudioFeatures


MEL_FLOOR = 1e-6  # added to mel power before the log: silence and padding sit at log(MEL_FLOOR)


def sounding_frames(mel: torch.Tensor) -> torch.Tensor:
    """(B, 1, M, T) log-mel -> (B, 1, 1, T) bool: frames above the floor in some band (not padding
    or digital silence)."""
    return mel.amax(dim=2, keepdim=True) > math.log(MEL_FLOOR) + 1e-3


def mel_frames(cfg: AudioFeatures, seconds: float) -> int:
    """Log-mel frames of `seconds` of audio (a centred STFT: one frame per hop, plus one)."""
    return int(seconds * cfg.sample_rate) // cfg.hop_length + 1


def is_mel_clip(inputs) -> bool:
    return isinstance(inputs, dict) and "mel" in inputs


def random_windows(mel: torch.Tensor, frames: torch.Tensor, width: int) -> torch.Tensor:
    """One window of `width` frames per sample, its start uniform over the sample's signal; (B, 1, M, width)."""
    last_start = (frames - width).clamp(min=0)
    start = (torch.rand(frames.shape, device=mel.device) * (last_start + 1)).long().clamp(max=mel.shape[-1] - width)
    windows = mel.unfold(-1, width, 1)  # (B, 1, M, F - width + 1, width), a view
    return windows[torch.arange(mel.shape[0], device=mel.device), :, :, start]


def window_starts(frames: torch.Tensor, total: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Starts (B, K) of every window (hop width // 2, the last one flush with the signal's end) and
    which of them are real (B, K)."""
    hop = max(width // 2, 1)
    last_start = (frames.clamp(max=total) - width).clamp(min=0)
    count = 1 + torch.div(last_start + hop - 1, hop, rounding_mode="floor")
    k = torch.arange(int(count.max()), device=frames.device)
    starts = torch.minimum(k[None] * hop, last_start[:, None])
    return starts, k[None] < count[:, None]


def pooled_windows(
    encode: Callable[[torch.Tensor], torch.Tensor], mel: torch.Tensor, frames: torch.Tensor, width: int
) -> torch.Tensor:
    """`encode` on every window of each sample's signal, averaged per sample; (B, D)."""
    starts, real = window_starts(frames, mel.shape[-1], width)
    batch = torch.arange(mel.shape[0], device=mel.device)[:, None].expand_as(starts)
    windows = mel.unfold(-1, width, 1)[batch[real], :, :, starts[real]]  # (n_real, 1, M, width)
    encoded = encode(windows)
    summed = torch.zeros(mel.shape[0], encoded.shape[1], dtype=encoded.dtype, device=encoded.device)
    summed.index_add_(0, batch[real], encoded)
    return summed / real.sum(1, keepdim=True).to(encoded.dtype)


def pooled_windows_static(
    encode: Callable[[torch.Tensor], torch.Tensor], mel: torch.Tensor, frames: torch.Tensor, width: int
) -> torch.Tensor:
    """`pooled_windows` with shapes fixed by the clip's length alone (for ONNX export): every sample
    encodes the most windows any clip of this length has; the ones past its signal weigh nothing."""
    total = int(mel.shape[-1])  # the stored clip length: a constant of the graph, in Python ints
    hop = max(width // 2, 1)
    most = 1 + (max(total - width, 0) + hop - 1) // hop  # windows of a clip whose signal fills it
    last_start = (frames.clamp(max=total) - width).clamp(min=0)
    count = 1 + torch.div(last_start + hop - 1, hop, rounding_mode="floor")
    k = torch.arange(most, device=mel.device)
    starts = torch.minimum(k[None] * hop, last_start[:, None])  # (B, K)
    real = (k[None] < count[:, None]).to(mel.dtype)  # (B, K)
    steps = starts[:, :, None] + torch.arange(width, device=mel.device)  # (B, K, width)
    flat = mel.flatten(1, 2)  # (B, M, F): one channel
    index = steps[:, :, None, :].expand(-1, -1, flat.shape[1], -1)  # (B, K, M, width)
    windows = torch.gather(flat[:, None].expand(-1, most, -1, -1), 3, index)
    encoded = encode(windows.reshape(-1, 1, int(flat.shape[1]), width))  # (B * K, D)
    encoded = encoded.reshape(-1, most, encoded.shape[-1])
    return (encoded * real[:, :, None]).sum(1) / real.sum(1, keepdim=True)


def encode_clip(encode: Callable[[torch.Tensor], torch.Tensor], clip: dict, width: int, training: bool) -> torch.Tensor:
    """A log-mel clip through `encode` window by window: a random window in training, all windows pooled otherwise."""
    mel, frames = clip["mel"], clip["frames"]
    if mel.shape[-1] <= width:
        return encode(mel)
    if training:
        return encode(random_windows(mel, frames, width))
    if torch.onnx.is_in_onnx_export():
        return pooled_windows_static(encode, mel, frames, width)
    return pooled_windows(encode, mel, frames, width)
