"""The traceable twins the ONNX export uses equal the eager code they stand in for, and survive
the export with other batch sizes and clip lengths than the ones traced."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from mmops.models.encoders import AdaptiveAvgPool, adaptive_avg_pool2d
from mmops.models.windows import encode_clip, pooled_windows, pooled_windows_static

W = 50


class WindowNet(nn.Module):
    """A small conv encoder over (B, 1, 6, W) windows, pooled over every window of a clip."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.GELU(), AdaptiveAvgPool(3), nn.Flatten())

    def forward(self, mel: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        return encode_clip(self.net, {"mel": mel, "frames": frames}, W, training=False)


def _clips(b: int, total: int = 173) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(b)
    frames = torch.randint(0, total + 1, (b,), generator=gen)
    frames[0] = total  # one clip fills the whole length, one is shorter than a window
    if b > 1:
        frames[1] = 7
    mel = torch.randn(b, 1, 6, total, generator=gen) * (torch.arange(total) < frames[:, None, None, None])
    return mel, frames


def test_static_windows_equal_the_eager_pooling():
    net = WindowNet().eval()
    mel, frames = _clips(5)
    eager = pooled_windows(net.net, mel, frames, W)
    static = pooled_windows_static(net.net, mel, frames, W)
    assert static.shape == eager.shape and torch.allclose(static, eager, atol=1e-6)


@pytest.mark.parametrize(("size", "out"), [((5, 11), (4, 4)), ((6, 6), (4, 6)), ((2, 9), (4, 3)), ((8, 8), (4, 4))])
def test_adaptive_pool_bins_equal_torch_while_exporting(size, out, monkeypatch):
    x = torch.randn(2, 3, *size)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    assert torch.allclose(adaptive_avg_pool2d(x, out), nn.functional.adaptive_avg_pool2d(x, out), atol=1e-6)


def test_exported_windows_run_any_batch_and_signal_length(tmp_path):
    net = WindowNet().eval()
    mel, frames = _clips(3)
    path = tmp_path / "w.onnx"
    with torch.no_grad():
        torch.onnx.export(net, (mel, frames), str(path), dynamo=False, input_names=["mel", "frames"],
                          output_names=["out"], dynamic_axes={"mel": {0: "b"}, "frames": {0: "b"}, "out": {0: "b"}},
                          opset_version=17)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b in (1, 4, 9):
        mel, frames = _clips(b)
        (got,) = session.run(["out"], {"mel": mel.numpy(), "frames": frames.numpy()})
        with torch.no_grad():
            expected = net(mel, frames).numpy()
        assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-5, b
