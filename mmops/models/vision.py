"""torchvision backbones for the image modality: ResNet-18 adapted to small grayscale images.

Our image features are (B, 1, size, size), normalised, with `size` small (16 in the demo). The
ResNet keeps torchvision's architecture, so a torchvision state dict loads as is, with two
adaptations: conv1 takes one channel (a 3-channel checkpoint's conv1 is summed over its input
channels: a gray image is R = G = B), and images smaller than `min_size` are upsampled
(bilinear) first, since the ImageNet stem downsamples 32x (16 px would end at 1x1 after layer3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from mmops.models.encoders import SHA256_HELP, Sha256
from mmops.models.pretrained import load_state_dict_file
from mmops.models.registry import ENCODERS
from mmops.registry_base import ComponentConfig


class ResNet18Config(ComponentConfig):
    weights: str | None = Field(
        None,
        description="state dict of torchvision's resnet18: a .safetensors file (anywhere) or a "
        ".pt/.pth inside the project; None: random init",
    )
    sha256: Sha256 | None = Field(None, description=SHA256_HELP)
    trainable: bool = Field(True, description="false: frozen (eval-mode BatchNorm; embeddings are cached)")
    min_size: int = Field(64, ge=64, le=512, description="smaller images are upsampled so the short side is this")

    @model_validator(mode="after")
    def _frozen_needs_weights(self) -> "ResNet18Config":
        if not self.trainable and self.weights is None:
            raise ValueError("trainable: false needs weights (a frozen random ResNet is a fixed random projection)")
        return self


def adapt_resnet_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision resnet18 state dict -> ours: no classifier (`fc.*`), one-channel conv1."""
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
    conv1 = state.get("conv1.weight")
    if conv1 is not None and conv1.shape[1] != 1:
        state["conv1.weight"] = conv1.sum(dim=1, keepdim=True)
    return state


@ENCODERS.register("resnet18_image", ResNet18Config)
class ResNet18ImageEncoder(nn.Module):
    """torchvision ResNet-18 over a (1, H, W) image -> 512 features (global average pool)."""

    def __init__(self, cfg: ResNet18Config, load_weights: bool = True) -> None:
        super().__init__()
        try:
            from torchvision.models import resnet18
        except ImportError as err:
            raise ImportError(f"resnet18_image needs torchvision (pip install -e . installs it): {err}") from err
        net = resnet18(weights=None)
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        net.fc = nn.Identity()
        if cfg.weights is not None and load_weights:
            state = adapt_resnet_state_dict(load_state_dict_file(cfg.weights, cfg.sha256, "model.image.options"))
            missing, unexpected = net.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ValueError(
                    f"model.image.options.weights {cfg.weights}: not a torchvision resnet18 state dict "
                    f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
                )
        self.net = net
        self.cfg = cfg
        self.out_dim = 512
        self.frozen = not cfg.trainable
        if self.frozen:
            self.net.requires_grad_(False)
            self.net.eval()

    def train(self, mode: bool = True) -> "ResNet18ImageEncoder":
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
