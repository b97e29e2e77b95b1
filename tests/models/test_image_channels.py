"""Image encoders and augmentation on grey (1) or RGB (3) channels."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from mmops.config import FeaturesConfig, ImageJitterConfig
from mmops.models import ENCODERS, MultimodalClassifier
from mmops.models.augment import image_jitter
from mmops.params_file import load_params


@pytest.mark.parametrize("name, out_dim", [("small_cnn_image", 32 * 16), ("resnet18_image", 512), ("resnet50_image", 2048)])
@pytest.mark.parametrize("channels", [1, 3])
def test_image_encoders_take_one_or_three_channels(name, out_dim, channels):
    options = {"channels": [16, 32]} if name == "small_cnn_image" else {}
    encoder = ENCODERS.build(name, options, in_channels=channels)
    out = encoder(torch.randn(2, channels, 20, 28))
    assert out.shape == (2, encoder.out_dim) and encoder.out_dim == out_dim
    with pytest.raises(RuntimeError):
        encoder(torch.randn(2, 4 - channels, 20, 28))  # the other channel count does not fit


def test_rgb_resnet_keeps_the_pretrained_conv1(tmp_path, resnet_state_dict):
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in resnet_state_dict.items()}, str(path))
    rgb = ENCODERS.build("resnet18_image", {"weights": str(path)}, in_channels=3)
    grey = ENCODERS.build("resnet18_image", {"weights": str(path)}, in_channels=1)
    assert torch.equal(rgb.net.conv1.weight, resnet_state_dict["conv1.weight"])
    assert torch.allclose(grey.net.conv1.weight, resnet_state_dict["conv1.weight"].sum(1, keepdim=True))
    with pytest.raises(ValueError, match="1 or 3"):
        ENCODERS.build("resnet18_image", {}, in_channels=2)


def test_classifier_builds_the_image_encoder_for_the_configured_channels(tiny_text_model):
    params = load_params(None, [f"model.text.options.pretrained={tiny_text_model}", "model.width=16",
                                "model.modalities=[image]"])
    rgb = MultimodalClassifier(params.model, 3, features=FeaturesConfig(image={"mode": "rgb", "size": 24}))
    assert rgb.encoders["image"].net[0].in_channels == 3
    batch = {"image": torch.randn(4, 3, 24, 24), "present": {"image": torch.ones(4, dtype=torch.bool)}}
    assert rgb(batch).shape == (4, 3)
    grey = MultimodalClassifier(params.model, 3)  # default features: grey, the demo
    assert grey.encoders["image"].net[0].in_channels == 1


def test_image_jitter_on_colour_images_fills_with_the_edge_colour():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 16, 16)
    out = image_jitter(x, ImageJitterConfig())
    assert out.shape == x.shape and not torch.equal(out, x)
    plain = torch.tensor([0.8, -0.2, 0.1]).view(1, 3, 1, 1).expand(2, 3, 16, 16).clone()
    plain[:, :, 6:10, 6:10] = torch.tensor([-1.0, 1.0, 0.5]).view(1, 3, 1, 1)  # an object on a plain background
    shrunk = image_jitter(plain, ImageJitterConfig(max_shift=0.0, max_rotate_deg=0.0, max_scale=0.5))
    corners = shrunk[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert torch.allclose(corners, plain[:, :, 0, :1].expand_as(corners), atol=1e-5)  # the background, not a mix


def test_grey_jitter_is_unchanged(monkeypatch):
    """One channel: the fill is the image's darkest value, as before colour existed."""
    import torch.nn.functional as F

    grey = torch.rand(3, 1, 16, 16)
    seen = []
    original = F.grid_sample
    monkeypatch.setattr(F, "grid_sample", lambda x, *a, **k: seen.append(x) or original(x, *a, **k))
    image_jitter(grey, ImageJitterConfig())
    assert torch.equal(seen[0], grey - grey.amin(dim=(1, 2, 3), keepdim=True))
