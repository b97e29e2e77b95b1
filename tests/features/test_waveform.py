"""Raw waveforms are stored (instead of log-mels) only when the audio encoder takes them."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch

from mmops.config import FeaturesConfig
from mmops.params_file import load_params
from mmops.features import FeatureExtractor


def _wav(sr=16000, seconds=0.5, freq=440.0):
    t = np.arange(int(sr * seconds)) / sr
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, format="WAV")
    return buf.getvalue()


def test_waveform_batch_is_padded_with_lengths(tmp_path):
    extractor = FeatureExtractor(FeaturesConfig(), ["audio"], None, cache_dir=tmp_path, audio_input="waveform")
    batch = extractor(["", "", "", ""], [None] * 4, [_wav(), None, _wav(sr=22050), _wav(seconds=3.0)])
    audio = batch["audio"]
    assert set(audio) == {"waveform", "length"} and audio["waveform"].shape == (4, 24000)
    assert audio["length"].tolist() == [8000, 0, 8000, 24000]  # resampled to 16 kHz; cut at max_seconds
    assert batch["present"]["audio"].tolist() == [True, False, True, True]
    assert torch.all(audio["waveform"][0, 8000:] == 0) and torch.all(audio["waveform"][1] == 0)
    t = torch.arange(8000) / 16000
    assert torch.allclose(audio["waveform"][0, :8000], 0.3 * torch.sin(2 * torch.pi * 440 * t), atol=1e-4)
    assert (tmp_path / "waveform").is_dir() and not (tmp_path / "audio").exists()  # its own cache entries
    again = extractor(["", "", "", ""], [None] * 4, [_wav(), None, _wav(sr=22050), _wav(seconds=3.0)])
    assert torch.equal(again["audio"]["waveform"], audio["waveform"])


def test_extractor_for_model_follows_the_audio_encoder(tiny_text_model):
    default = load_params(None, [f"model.text.options.pretrained={tiny_text_model}"])
    assert FeatureExtractor.for_model(default.features, default.model).audio_input == "log_mel"
    hf = load_params(None, [f"model.text.options.pretrained={tiny_text_model}", "model.audio.name=hf_audio",
                            "model.audio.options.pretrained=/nowhere/needed/to/build/the/extractor"])
    extractor = FeatureExtractor.for_model(hf.features, hf.model)
    assert extractor.audio_input == "waveform"
    assert isinstance(extractor(["x"], [None], [_wav()])["audio"], dict)
    with pytest.raises(ValueError, match="audio_input 'mfcc'"):
        FeatureExtractor(FeaturesConfig(), ["audio"], None, audio_input="mfcc")
