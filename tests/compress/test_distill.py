"""Distillation: the loss follows the teacher's soft labels, the student is the smaller config over the
same features, the gate refuses a drop beyond its bound, and the student serves through the shared path."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from datagen.unlike_demo import make_dataset
from mmops import stages
from mmops.catalog import CHECKPOINT, Catalog, split_file
from mmops.compress.distill import (
    DistillRecipe,
    distill_and_compare,
    distillation_loss_sum,
    student_model_config,
    student_params,
    write_teacher_logits,
)
from mmops.compress.variant import compare_variant
from mmops.config import ConfigError, DistillConfig, ModelConfig, Params
from mmops.features.shards import SplitView
from mmops.inference.model_dir import load_checkpoint, load_model_dir
from mmops.inference.predict import predict_frame, split_logits
from mmops.params_file import load_params
from pipeline_overrides import overrides_for

CLASSES = ("cat", "dog", "eel")
# the teacher is small already (width 32, a one-layer BERT of width 32): a student smaller still
STUDENT = {"width": 16, "head": {"hidden": 32}, "text": {"name": "gru_text", "options": {"embedding_dim": 8, "hidden": 8}},
           "image": {"options": {"channels": [8, 16]}}}
FAST = {"epochs": 8, "lr": 0.01, "student": STUDENT}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_text_model):
    """(model folder, catalogue): a teacher (frozen tiny BERT text + CNN image) trained on a text + image
    dataset with string labels, no audio column."""
    root = tmp_path_factory.mktemp("distill")
    make_dataset(root / "data", n_per_class=16, classes=CLASSES, variant="no_audio", p_uninformative=0.0)
    extra = {"train.epochs": 4, "train.patience": 100, "train.device": "cpu", "train.batch_size": 8}
    params = load_params(None, overrides_for(root, tiny_text_model, **extra))
    paths = Catalog.from_paths(params.paths)
    stages.validate(params, paths)
    stages.preprocess(params, paths)
    return stages.train(params, paths), paths


def test_the_loss_is_the_soft_term_at_alpha_1_and_cross_entropy_at_alpha_0():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    labels, others = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([2, 2, 2, 1, 1, 1])
    soft = distillation_loss_sum(student, teacher, labels, 2.0, 1.0)
    assert soft == distillation_loss_sum(student, teacher, others, 2.0, 1.0)  # no label enters
    p_t = F.softmax(teacher / 2, 1)
    expected = (p_t * (p_t.log() - F.log_softmax(student / 2, 1))).sum() * 4
    assert soft == pytest.approx(float(expected), rel=1e-5)
    assert float(distillation_loss_sum(teacher, teacher, labels, 2.0, 1.0)) == pytest.approx(0.0, abs=1e-5)
    assert distillation_loss_sum(student, teacher, labels, 2.0, 0.0) == pytest.approx(
        float(F.cross_entropy(student, labels, reduction="sum")))


def test_the_student_config_swaps_components_and_keeps_the_tokenizer():
    teacher = ModelConfig.model_validate({
        "width": 128, "text": {"name": "hf_text", "options": {"pretrained": "/tok", "pooling": "attention"}},
        "image": {"name": "small_cnn_image", "options": {"channels": [32, 64], "stem_stride": 2}},
    })
    student = student_model_config(teacher, DistillConfig().student)
    assert student.width == 64 and student.head.hidden == 128
    assert student.text.name == "gru_text" and student.text.options["pretrained"] == "/tok"
    assert "pooling" not in student.text.options  # the transformer's options do not leak into the GRU
    assert student.image.options == {"channels": [16, 32], "stem_stride": 2}  # same component: merged



def test_the_default_student_keeps_a_teacher_component_it_has_no_halving_for():
    """A ResNet image encoder and a speech transformer take no `channels`: the default student keeps them."""
    teacher = ModelConfig.model_validate({
        "image": {"name": "resnet18_image", "options": {"min_size": 96}},
        "audio": {"name": "hf_audio", "options": {"pretrained": "/speech"}},
    })
    student = student_model_config(teacher, DistillConfig().student)
    assert student.image == teacher.image and student.audio == teacher.audio
    assert student.text.name == "gru_text" and student.width == 64  # the rest is still halved
    params = load_params(None, ["distill.enabled=true", "model.image.name=resnet18_image"])
    assert params.distill.student == DistillConfig().student  # loads: nothing fails after training the teacher


def test_a_student_override_the_teacher_component_does_not_take_fails_at_load():
    with pytest.raises(ConfigError) as raised:
        load_params(None, ["distill.enabled=true", "model.image.name=resnet18_image",
                           "distill.student.image.options.channels=[8]"])
    assert "distill.student (merged into model).image.options.channels: Extra inputs are not permitted" in str(raised.value)
    load_params(None, ["distill.enabled=false", "model.image.name=resnet18_image",  # off: never built, not checked
                       "distill.student.image.options.channels=[8]"])

def _teacher_that_disagrees(model_dir, out_dir):
    """A copy of the teacher whose class logits are rotated (it predicts class (c + 1) % 3 where it said c)
    and sharpened: a briefly trained teacher's soft labels are close to uniform."""
    shutil.copytree(model_dir, out_dir)
    ckpt = torch.load(out_dir / CHECKPOINT, weights_only=True)
    for key in ("head.3.weight", "head.3.bias"):
        ckpt["state_dict"][key] = ckpt["state_dict"][key].roll(1, dims=0) * 10
    torch.save(ckpt, out_dir / CHECKPOINT)
    return out_dir


def _predictions(model, features):
    """Argmax of `model` on every training row, and the labels."""
    train = SplitView(split_file(features, "train"))
    return split_logits(model, train, torch.device("cpu"), 64)[frozenset()].argmax(1), train.column("labels")


def test_soft_targets_move_the_student_to_the_teacher(teacher, tmp_path):
    """At alpha 1 the student learns what a teacher says even where every label says otherwise (the
    trained weights, before the recipe's checkpoint selection on validation labels)."""
    model_dir, paths = teacher
    liar = _teacher_that_disagrees(model_dir, tmp_path / "liar")
    says, labels = _predictions(load_model_dir(liar).model, paths.features)
    assert float((says == labels).float().mean()) <= 0.4  # the rotated teacher contradicts most labels
    cfg = DistillConfig(alpha=1.0, temperature=1.0, **FAST)
    params = student_params(Params.model_validate(load_checkpoint(liar)["params"]), cfg)
    layer = write_teacher_logits(load_model_dir(liar).model, SplitView(split_file(paths.features, "train")),
                                 paths.embeddings, tmp_path / "logits")
    recipe = DistillRecipe(params, replace(paths, model=tmp_path / "student"), layer, cfg)
    recipe.setup()
    recipe.finish(recipe.train())
    learned, _ = _predictions(recipe.model, paths.features)
    assert float((learned == says).float().mean()) >= 0.75
    assert float((learned == labels).float().mean()) <= float((says == labels).float().mean()) + 0.15


@pytest.fixture(scope="module")
def compared(teacher, tmp_path_factory):
    model_dir, paths = teacher
    out = tmp_path_factory.mktemp("student") / "model_distilled"
    return distill_and_compare(model_dir, paths.features, paths.cache, DistillConfig(**FAST), out), out


def test_the_student_is_smaller_and_compared_on_the_test_split(teacher, compared):
    report, out = compared
    student, fp32 = load_model_dir(out), load_model_dir(teacher[0])
    assert student.params.model.text.name == "gru_text" and student.params.model.width == 16
    assert student.params.model.modalities == ["text", "image"] and student.classes == list(CLASSES)
    assert report.n_test == len(SplitView(split_file(teacher[1].features, "test")))
    assert report.accuracy_drop == pytest.approx(report.accuracy_fp32 - report.accuracy_variant, abs=1e-6)
    assert report.size_variant_bytes < report.size_fp32_bytes  # the tiny BERT is gone
    assert report.size_ratio == pytest.approx(report.size_variant_bytes / report.size_fp32_bytes)
    assert report.latency_fp32_p50_ms > 0 and report.latency_variant_p50_ms > 0
    assert report.accepted == (report.accuracy_drop <= report.max_accuracy_drop)
    assert "Distilled student" in report.markdown("7") and "gru_text" in report.markdown()
    assert sum(p.numel() for p in student.model.parameters()) < sum(p.numel() for p in fp32.model.parameters())


def test_the_student_predicts_raw_rows_through_the_shared_path(compared, teacher):
    _, out = compared
    data = teacher[1].data
    import pandas as pd

    rows = pd.read_csv(data / "manifest.csv", dtype=str, keep_default_na=False).head(5)
    frame = pd.DataFrame({"text": rows["text"], "image": [str(data / p) if p else None for p in rows["image"]]})
    frame.loc[1, "image"], frame.loc[2, "text"] = None, None  # one modality missing
    pred = predict_frame(load_model_dir(out), frame)
    assert list(pred.columns) == ["label", *CLASSES]
    assert set(pred["label"]) <= set(CLASSES)
    assert pred[list(CLASSES)].sum(axis=1).round(5).eq(1.0).all()


def test_the_gate_refuses_a_drop_beyond_the_bound(teacher, compared):
    (model_dir, paths), (_, out) = teacher, compared
    fp32, student = load_model_dir(model_dir), load_model_dir(out)
    # no student can be 1.0 better than its teacher: the comparison distill_and_compare makes, bound -1
    report = compare_variant("distilled", "Distilled student", fp32, model_dir, student, out, paths.features, -1.0)
    assert not report.accepted and report.max_accuracy_drop == -1.0
    assert "not registered" in report.markdown()


def test_the_recipe_trains_from_the_student_params_not_the_teacher_folder(compared):
    """The student's recorded params name the tokenizer source, so the folder rebuilds without the teacher."""
    _, out = compared
    ckpt = torch.load(out / CHECKPOINT, weights_only=True)
    assert ckpt["params"]["model"]["text"]["name"] == "gru_text"
    assert (out / "text_backbone").is_dir()
    assert not any(k.startswith("encoders.text.backbone") for k in ckpt["state_dict"])
