"""Keys for frozen-encoder embeddings on disk (`mmops.features.frozen`): reused across epochs and runs.

The key hashes what decides the output: the encoder's class, its options (less where the weights
came from), every frozen tensor of its state dict (trainable ones act after the cached part), the
rows it embeds (a shard's sha256), the device type and the torch version. A different model, other
weights or other inputs miss; nothing is ever stale.
"""

from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

LOCATION_OPTIONS = ("pretrained", "weights", "sha256")  # the weights themselves are hashed instead


def _update(digest: "hashlib._Hash", tensor: torch.Tensor) -> None:
    t = tensor.detach().cpu().contiguous()
    digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
    digest.update(t.reshape(-1).view(torch.uint8).numpy())


def encoder_fingerprint(encoder: nn.Module) -> str:
    """sha256 of the encoder's frozen identity: class, options and every frozen weight and buffer."""
    digest = hashlib.sha256(f"{type(encoder).__module__}.{type(encoder).__qualname__}".encode())
    cfg = getattr(encoder, "cfg", None)
    if cfg is not None:
        options = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in LOCATION_OPTIONS}
        digest.update(json.dumps(options, sort_keys=True).encode())
    trainable = {name for name, param in encoder.named_parameters() if param.requires_grad}
    for name, tensor in sorted(encoder.state_dict().items()):
        if name in trainable:  # a trainable part (e.g. attention pooling) runs after the cached output
            continue
        digest.update(name.encode())
        _update(digest, tensor)
    return digest.hexdigest()


def cache_key(encoder_fp: str, inputs_fp: str, device: torch.device) -> str:
    """The cache key of `inputs_fp` (what is embedded) through `encoder_fp` (who embeds it) on `device`."""
    parts = (encoder_fp, inputs_fp, torch.device(device).type, torch.__version__)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()
