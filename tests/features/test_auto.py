"""`auto` settings resolved from data unlike the demo: deterministic, recorded, pinned values kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from datagen.unlike_demo import make_dataset

from mmops.config import Params
from mmops.config.resolved import Resolved
from mmops.data.manifest import read_manifest
from mmops.data.splits import assign_splits
from mmops.features.auto import resolve
from mmops.params_file import load_params


@pytest.fixture(scope="module")
def colour_dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("colour"), n_per_class=12)


def _resolve(params: Params, data: Path, tokenizer: Path) -> Resolved:
    params = params.model_copy(update={"model": params.model.model_copy(update={"text": params.model.text.model_copy(
        update={"options": {"pretrained": str(tokenizer)}})})})
    rows = assign_splits(read_manifest(data), params.seed)
    return resolve(params.classes, params.features, params.model, rows, data)


def test_auto_reads_classes_modalities_and_sizes_from_the_data(colour_dataset, tiny_text_model, tmp_path):
    params = load_params(None, check_components=False)
    resolved = _resolve(params, colour_dataset, tiny_text_model)
    assert resolved.classes == ["negative", "neutral", "positive"]
    assert resolved.modalities == ["text", "image", "audio"]
    assert resolved.features.image.mode == "rgb" and 16 <= resolved.features.image.size <= 64
    assert resolved.features.audio.max_seconds >= 3.0  # 2-4 s clips: the window covers the p95 duration
    assert resolved.features.audio.max_clip_seconds >= resolved.features.audio.max_seconds
    assert resolved.features.text.max_length > 32  # 20-80 words do not fit the old fixed 32 tokens
    resolved.write(tmp_path / "resolved.yaml")
    assert Resolved.read(tmp_path / "resolved.yaml") == resolved == _resolve(params, colour_dataset, tiny_text_model)

    final = resolved.apply(params)
    assert final.classes == resolved.classes and final.model.modalities == resolved.modalities
    assert final.features.image.size == resolved.features.image.size


def test_pinned_values_win_and_missing_columns_drop_out(tmp_path, tiny_text_model):
    data = make_dataset(tmp_path / "no_audio", n_per_class=8, variant="no_audio")
    params = load_params(None, ["features.image.mode=grey", "features.text.max_length=48"], check_components=False)
    resolved = _resolve(params, data, tiny_text_model)
    assert resolved.modalities == ["text", "image"] and "audio" in resolved.why["modalities"]
    final = resolved.apply(params)
    assert final.features.image.mode == "grey" and final.features.text.max_length == 48


def test_an_all_empty_column_is_not_a_modality(tmp_path, tiny_text_model):
    data = make_dataset(tmp_path / "empty", n_per_class=8, variant="empty_column")
    resolved = _resolve(load_params(None, check_components=False), data, tiny_text_model)
    assert resolved.modalities == ["text", "image"]
