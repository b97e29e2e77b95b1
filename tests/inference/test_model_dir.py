"""The model folder: fp32 and int8 through one loader, so a variant decodes inputs as training did."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import soundfile as sf
import pytest
import torch

from mmops.catalog import CHECKPOINT
from mmops.inference.model_dir import (
    export_audio_backbone,
    lean_checkpoint,
    load_model_dir,
    quantize_model,
    save_int8_dir,
    write_base_weights,
)
from mmops.inference.predict import predict_frame
from mmops.models import MultimodalClassifier
from mmops.params_file import load_params

CLASSES = ["low", "mid", "high"]


def _wav(freq: float, seconds: float = 0.8, rate: int = 22050) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


def test_int8_variant_of_an_hf_audio_model_predicts_from_waveforms(tiny_audio_model, tmp_path):
    params = load_params(None, ["model.modalities=[audio]", "model.audio.name=hf_audio",
                                f"model.audio.options.pretrained={tiny_audio_model}", "model.width=16"])
    torch.manual_seed(0)
    model = MultimodalClassifier(params.model, len(CLASSES), features=params.features).eval()
    fp32_dir, int8_dir = tmp_path / "model", tmp_path / "model_int8"
    fp32_dir.mkdir()
    torch.save({"state_dict": model.state_dict(), "params": params.dump(), "classes": CLASSES}, fp32_dir / CHECKPOINT)
    export_audio_backbone(model, fp32_dir)

    save_int8_dir(fp32_dir, quantize_model(model), int8_dir)
    fp32, int8 = load_model_dir(fp32_dir), load_model_dir(int8_dir)

    assert int8.extractor.audio_input == fp32.extractor.audio_input == "waveform"
    assert any("quantized" in type(m).__module__ for m in int8.model.modules())
    rows = pd.DataFrame({"audio": [_wav(220.0), _wav(880.0, 1.3, 44100), None]})
    want, got = predict_frame(fp32, rows), predict_frame(int8, rows)
    assert list(got.columns) == ["label", *CLASSES]
    assert np.allclose(got[CLASSES].sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(got[CLASSES].to_numpy() - want[CLASSES].to_numpy()).max() < 0.05


@pytest.mark.parametrize("mode", ["grey", "rgb"])
def test_a_frozen_resnet_is_referenced_not_stored_and_loads_back(mode, tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    torch.manual_seed(0)
    weights = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in resnet18(weights=None).state_dict().items()}, str(weights))
    base = ["model.modalities=[image]", "model.image.name=resnet18_image", f"model.image.options.weights={weights}",
            "model.width=16", f"features.image.mode={mode}", "features.image.size=32"]
    params = load_params(None, base + ["model.image.options.trainable=false"])
    model = MultimodalClassifier(params.model, len(CLASSES), features=params.features).eval()
    full = model.state_dict()
    state, bases = lean_checkpoint(model, full)

    assert bases["image"]["prefix"] == "encoders.image.net." and bases["image"]["source"] == str(weights)
    frozen = [k for k in full if k.startswith("encoders.image.net.")]
    kept = [k for k in frozen if k in state]
    assert kept == ([] if mode == "rgb" else ["encoders.image.net.conv1.weight"])  # grey: conv1 summed over RGB
    assert bases["image"]["tensors"] == len(frozen) - len(kept)
    folder = tmp_path / "model"
    folder.mkdir()
    torch.save({"state_dict": state, "params": params.dump(), "classes": CLASSES}, folder / CHECKPOINT)
    write_base_weights(folder, bases)
    assert (folder / CHECKPOINT).stat().st_size < weights.stat().st_size / 20  # ~45 MB of ResNet not copied

    loaded = load_model_dir(folder)
    channels = 1 if mode == "grey" else 3
    batch = {"image": torch.randn(2, channels, 32, 32), "present": {"image": torch.ones(2, dtype=torch.bool)}}
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(batch), model(batch), rtol=0, atol=0)

    trainable = load_params(None, base)  # trained weights differ from the file: stored in full
    assert lean_checkpoint(MultimodalClassifier(trainable.model, len(CLASSES), features=trainable.features),
                           full)[1] == {}
