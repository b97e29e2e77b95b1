"""The ONNX variant: export of the whole model, equal outputs to PyTorch, verified loading."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import torch

from datagen.unlike_demo import make_dataset
from mmops import stages
from mmops.catalog import CHECKPOINT, Catalog
from mmops.compress.onnx_export import compare, export_and_compare
from mmops.config import OnnxConfig
from mmops.evaluate.latency import frozen_test_rows, request_rows
from mmops.inference.model_dir import load_model_dir
from mmops.inference.onnx_model import ONNX_FILE, ONNX_META, OnnxModel, OnnxModelRefused, is_onnx_dir, load_onnx_dir
from mmops.inference.predict import load_model_uri, predict_frame, predict_rows
from mmops.inference.verify import ModelVerificationError, model_record, verify_model_dir
from mmops.params_file import load_params
from pipeline_overrides import overrides_for

LIMIT = 1e-4


@pytest.fixture(scope="module")
def exported(prepared, served_model_dir, tmp_path_factory):
    """(report, ONNX folder) of the shared trained model (text + image + audio) on the small dataset."""
    out = tmp_path_factory.mktemp("onnx") / "model_onnx"
    report = export_and_compare(served_model_dir, prepared.paths.features, OnnxConfig(enabled=True), out)
    return report, out


def test_export_equals_pytorch_on_the_test_split(exported):
    report, out = exported
    assert report.exported and report.error is None
    assert report.n_test > 10
    assert report.max_abs_diff_probs <= LIMIT and report.max_abs_diff_logits <= 1e-3
    assert report.accepted and report.label_agreement == 1.0
    assert report.accuracy_onnx == report.accuracy_torch
    assert report.size_onnx_bytes > 0 and report.latency_torch_p50_ms > 0 and report.latency_onnx_p50_ms > 0
    assert report.latency_ratio == pytest.approx(report.latency_onnx_p50_ms / report.latency_torch_p50_ms)
    assert "ONNX variant: registered" in report.markdown()
    # the folder: graph + sidecar + tokenizer, no PyTorch checkpoint
    assert is_onnx_dir(out) and not (out / CHECKPOINT).exists() and (out / "text_backbone").is_dir()


def test_raw_rows_give_the_same_answers_any_batch(exported, served_model_dir, prepared, small_dataset):
    """The served path (decode, features, model call): same labels and probabilities, rows with
    missing modalities included, one row at a time and all together."""
    torch_model, onnx_model = load_model_dir(served_model_dir), load_model_uri(str(exported[1]))
    assert isinstance(onnx_model.model, OnnxModel) and onnx_model.classes == torch_model.classes
    frame = frozen_test_rows(small_dataset, Catalog.from_paths(prepared.paths, data=small_dataset).splits_csv)
    rows = request_rows(frame, 6)
    rows[1]["audio"], rows[2]["image"], rows[3]["text"] = None, None, None
    rows[4]["image"] = rows[4]["audio"] = None
    expected = predict_rows(torch_model, rows, "v")
    for got in (predict_rows(onnx_model, rows, "v"), [predict_rows(onnx_model, [r], "v")[0] for r in rows]):
        assert [p["label"] for p in got] == [p["label"] for p in expected]
        for g, e in zip(got, expected):
            assert max(abs(g["probabilities"][c] - e["probabilities"][c]) for c in e["probabilities"]) <= LIMIT


def test_a_tampered_onnx_file_is_refused(exported, tmp_path):
    copy = tmp_path / "model_onnx"
    shutil.copytree(exported[1], copy)
    recorded = model_record(copy)  # what registration records
    data = bytearray((copy / ONNX_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / ONNX_FILE).write_bytes(bytes(data))
    with pytest.raises(OnnxModelRefused, match="does not match"):
        load_onnx_dir(copy)  # a local folder: the sha256 in onnx.json
    with pytest.raises(ModelVerificationError, match=r"model\.onnx \(changed\)"):
        verify_model_dir(copy, recorded, "m v2")  # a registered folder: the registration's digests


def test_a_changed_sidecar_is_refused_by_the_registration_digests(exported, tmp_path):
    """Replacing both the graph and its recorded sha256 passes the local check, not the registry's."""
    copy = tmp_path / "model_onnx"
    shutil.copytree(exported[1], copy)
    recorded = model_record(copy)
    (copy / ONNX_META).write_text((copy / ONNX_META).read_text() + "\n")
    with pytest.raises(ModelVerificationError, match=r"onnx\.json \(changed\)"):
        verify_model_dir(copy, recorded, "m v2")


def test_an_impossible_limit_is_not_accepted(exported, served_model_dir, prepared):
    """Two runtimes' float32 kernels never agree to 1e-12: the limit is what decides."""
    cfg = OnnxConfig(enabled=True, max_abs_diff=1e-12)
    onnx = load_onnx_dir(exported[1])
    report = compare(load_model_dir(served_model_dir), onnx.model, exported[1] / ONNX_FILE, prepared.paths.features, cfg,
                     timed=False)
    assert report.exported and report.max_abs_diff_probs > 1e-12 and not report.accepted
    assert "not registered" in report.markdown()


def test_text_and_image_dataset_with_string_labels(tmp_path, tiny_text_model):
    """A generated dataset unlike the demo: two modalities, string labels, colour photos in PNG/JPEG,
    an image side (24 px) whose pooling bins overlap, attention pooling over the text states."""
    data = make_dataset(tmp_path / "shapes", n_per_class=10, variant="no_audio")
    params = load_params(None, overrides_for(tmp_path, tiny_text_model, **{
        "train.epochs": 2, "features.image.size": 24, "model.text.options.pooling": "attention"}))
    paths = Catalog.from_paths(params.paths, data=data)
    stages.validate(params, paths)
    stages.preprocess(params, paths)
    params = stages.resolved(params, paths)
    assert params.model.modalities == ["text", "image"]
    stages.train(params, paths)

    report = export_and_compare(paths.model, paths.features, OnnxConfig(enabled=True), tmp_path / "onnx")
    assert report.accepted and report.max_abs_diff_probs <= LIMIT and report.label_agreement == 1.0
    rows = request_rows(frozen_test_rows(paths.data, paths.splits_csv), 4)
    rows[0]["image"] = None
    expected = predict_frame(load_model_dir(paths.model), pd.DataFrame(rows))
    got = predict_frame(load_onnx_dir(tmp_path / "onnx"), pd.DataFrame(rows))
    assert set(got["label"]) <= {"negative", "neutral", "positive"}
    assert list(got["label"]) == list(expected["label"])
    classes = ["negative", "neutral", "positive"]
    assert float(torch.tensor((got[classes] - expected[classes]).abs().to_numpy()).max()) <= LIMIT
