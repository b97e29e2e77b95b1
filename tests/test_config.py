from pathlib import Path

import pytest

from mmops.config import ConfigError, Params
from mmops.params_file import load_params

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_validate():
    params = load_params(REPO / "params.yaml")
    assert params.registry.model_name == "mmops-classifier"
    assert params.model.modalities == "auto" and params.classes == "auto"  # derived from the data at preprocess


def test_defaults_without_file():
    assert load_params(None) == Params()


def test_overrides_apply_and_parse_types():
    params = load_params(None, ["train.lr=1e-3", "train.epochs=5", "model.modalities=[image, audio]"])
    assert params.train.lr == pytest.approx(1e-3)
    assert params.train.epochs == 5
    assert params.model.modalities == ["image", "audio"]


def test_unknown_key_is_named(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"train\.epochz"):
        load_params(f)


def test_bad_value_is_named():
    with pytest.raises(ConfigError, match=r"train\.lr.*greater than or equal to 0"):
        load_params(None, ["train.lr=-1"])


def test_unknown_encoder_is_named():
    with pytest.raises(ConfigError, match=r"unknown encoder 'resnet9000'"):
        load_params(None, ["model.image.name=resnet9000"])


def test_bad_encoder_option_is_named():
    with pytest.raises(ConfigError, match=r"chanels"):
        load_params(None, ["model.image.options={chanels: [8]}"])


def test_malformed_override():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_params(None, ["train.lr"])


def test_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_params("nope.yaml")
