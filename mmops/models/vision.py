"""torchvision backbones for the image modality: ResNet-18 and ResNet-50 on grey or RGB images.

Our image features are (B, C, size, size), normalised, C = 1 (grey) or 3 (RGB). The ResNets keep
torchvision's architecture, so a torchvision state dict loads as is, with two adaptations: on
grey input conv1 takes one channel (a 3-channel checkpoint's conv1 is summed over its input
channels: a grey image is R = G = B; on RGB input conv1 is the checkpoint's own), and images
smaller than `min_size` are upsampled (bilinear) first, since the ImageNet stem downsamples 32x
(16 px would end at 1x1 after layer3). Pretrained weights expect ImageNet normalisation
(`features.image.mean: [0.485, 0.456, 0.406]`, `std: [0.229, 0.224, 0.225]`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from mmops.models.components import ENCODERS, ComponentConfig
from mmops.models.encoders import SHA256_HELP, Sha256
from mmops.models.pretrained import FrozenWeights, is_safetensors, load_state_dict_file


class ResNetConfig(ComponentConfig):
    weights: str | None = Field(
        None,
        description="state dict of the torchvision ResNet of the same depth: a .safetensors file "
        "(anywhere) or a .pt/.pth inside the project; None: random init",
    )
    sha256: Sha256 | None = Field(None, description=SHA256_HELP)
    trainable: bool = Field(True, description="false: frozen (eval-mode BatchNorm; embeddings are cached)")
    min_size: int = Field(64, ge=64, le=512, description="smaller images are upsampled so the short side is this")

    @model_validator(mode="after")
    def _frozen_needs_weights(self) -> "ResNetConfig":
        if not self.trainable and self.weights is None:
            raise ValueError("trainable: false needs weights (a frozen random ResNet is a fixed random projection)")
        return self


def adapt_resnet_state_dict(state: dict[str, torch.Tensor], in_channels: int = 1) -> dict[str, torch.Tensor]:
    """A torchvision ResNet state dict -> ours: no classifier (`fc.*`), conv1 for `in_channels` (1 or 3)."""
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
    conv1 = state.get("conv1.weight")
    if conv1 is not None and conv1.shape[1] != in_channels:
        if in_channels != 1:
            raise ValueError(f"conv1 of the checkpoint takes {conv1.shape[1]} channels, the images have {in_channels}")
        state["conv1.weight"] = conv1.sum(dim=1, keepdim=True)
    return state


class ResNetImageEncoder(nn.Module):
    """A torchvision ResNet over a (C, H, W) image -> its pooled features (global average pool)."""

    arch = ""
    out_dim = 0

    def __init__(self, cfg: ResNetConfig, load_weights: bool = True, in_channels: int = 1) -> None:
        super().__init__()
        try:
            import torchvision.models
        except ImportError as err:
            raise ImportError(f"{self.arch}_image needs torchvision (pip install -e . installs it): {err}") from err
        if in_channels not in (1, 3):
            raise ValueError(f"{self.arch}_image takes 1 or 3 image channels, not {in_channels}")
        net = getattr(torchvision.models, self.arch)(weights=None)
        if in_channels == 1:
            net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        net.fc = nn.Identity()
        if cfg.weights is not None and load_weights:
            raw = load_state_dict_file(cfg.weights, cfg.sha256, "model.image.options")
            missing, unexpected = net.load_state_dict(adapt_resnet_state_dict(raw, in_channels), strict=False)
            if missing or unexpected:
                raise ValueError(
                    f"model.image.options.weights {cfg.weights}: not a torchvision {self.arch} state dict "
                    f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
                )
        self.net = net
        self.cfg = cfg
        self.frozen = not cfg.trainable
        if self.frozen:
            self.net.requires_grad_(False)
            self.net.eval()

    def frozen_weights(self) -> FrozenWeights | None:
        """A frozen ResNet's torchvision safetensors file (None: trainable, or a torch pickle file)."""
        if not self.frozen:
            return None
        file = Path(self.cfg.weights)
        return FrozenWeights("net", file if file.is_file() and is_safetensors(file) else None, "")

    def train(self, mode: bool = True) -> "ResNetImageEncoder":
        super().train(mode)
        if self.frozen:
            self.net.eval()  # frozen: BatchNorm keeps its pretrained statistics
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = min(x.shape[-2:])
        if short < self.cfg.min_size:
            scale = self.cfg.min_size / short
            size = (round(x.shape[-2] * scale), round(x.shape[-1] * scale))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.net(x)


@ENCODERS.register("resnet18_image", ResNetConfig)
class ResNet18ImageEncoder(ResNetImageEncoder):
    """torchvision ResNet-18 -> 512 features."""

    arch, out_dim = "resnet18", 512


@ENCODERS.register("resnet50_image", ResNetConfig)
class ResNet50ImageEncoder(ResNetImageEncoder):
    """torchvision ResNet-50 -> 2048 features."""

    arch, out_dim = "resnet50", 2048
