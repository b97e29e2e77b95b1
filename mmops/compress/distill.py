"""Knowledge distillation: a smaller student trained on the fp32 model's soft labels and the hard labels.

The student is the teacher's model config with `distill.student` merged in (default: half the
width, a GRU over the same token ids instead of the transformer, half the conv channels): it
reads the very features the teacher was trained on, so it serves through the same extractor.
Training is the training recipe (mmops/train/recipe.py) with its two seams filled: the training
rows carry the teacher's logits (a layer of the sharded split, computed once per shard in eval
mode, on un-augmented inputs), and the loss is

    alpha * KL(softmax(teacher / T) || softmax(student / T)) * T^2 + (1 - alpha) * CE(student, labels)

(T^2 keeps the soft term's gradient on the scale of the hard one, Hinton et al. 2015). Early
stopping and the checkpoint are the recipe's, on validation macro-F1. The student is compared
with the teacher on the test split like the int8 variant (mmops/compress/variant.py).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mmops.catalog import Catalog, split_file
from mmops.compress.variant import VariantReport, compare_variant
from mmops.config import AUTO, DistillConfig, ModelConfig, Params
from mmops.config.compress import default_student
from mmops.features.frozen import embedded_view
from mmops.features.shards import Layer, SplitView, shard_name, write_shard
from mmops.inference.model_dir import load_checkpoint, load_model_dir
from mmops.inference.predict import predict_logits
from mmops.models.components import ENCODERS, FUSIONS
from mmops.train.recipe import TrainRecipe

TEACHER = "teacher"  # batch key of the soft targets: batch["teacher"]["logits"]
COMPONENTS = {"text": ENCODERS, "image": ENCODERS, "audio": ENCODERS, "fusion": FUSIONS}


def distillation_loss_sum(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
                          temperature: float, alpha: float) -> torch.Tensor:
    """alpha * KL(teacher_T || student_T) * T^2 + (1 - alpha) * CE(labels), summed over the rows."""
    t = temperature
    student = student.float()
    soft = F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher.float() / t, 1), log_target=True,
                    reduction="sum") * t * t
    return alpha * soft + (1 - alpha) * F.cross_entropy(student, labels, reduction="sum")


def student_model_config(teacher: ModelConfig, overrides: dict[str, Any]) -> ModelConfig:
    """`teacher` with `overrides` merged in. A component whose name changes takes only the override's
    options, plus the teacher's `pretrained` where the new component has one (the tokenizer the
    features were made with); otherwise options are merged key by key.

    The default student (`default_student()`) halves the default components; where the teacher has
    another component (a ResNet, a speech transformer) whose options those are not, the student
    keeps the teacher's. Given overrides are applied as they are: `mmops.params_file` checks them."""
    merged = teacher.model_dump(mode="json")
    default = overrides == default_student()
    for key, value in overrides.items():
        if key in COMPONENTS and isinstance(value, dict):
            spec = merged[key]
            name = value.get("name", spec["name"])
            options = dict(value.get("options") or {})
            if default and name == spec["name"] and set(options) - set(COMPONENTS[key].config_for(name).model_fields):
                continue
            if name == spec["name"]:
                options = spec["options"] | options
            elif "pretrained" in spec["options"] and "pretrained" in COMPONENTS[key].config_for(name).model_fields:
                options.setdefault("pretrained", spec["options"]["pretrained"])
            merged[key] = {"name": name, "options": options}
        elif key == "head" and isinstance(value, dict):
            merged[key] = merged[key] | value
        else:
            merged[key] = value
    return ModelConfig.model_validate(merged)


def student_params(teacher: Params, cfg: DistillConfig) -> Params:
    """The teacher's training params (as its checkpoint recorded them) with the student model and
    the distillation's epochs and learning rate; early stopping is re-derived for those epochs."""
    train = teacher.train.model_copy(update={"epochs": cfg.epochs, "lr": cfg.lr, "patience": AUTO, "min_epochs": AUTO})
    return teacher.model_copy(update={"model": student_model_config(teacher.model, cfg.student), "train": train})


def write_teacher_logits(teacher: torch.nn.Module, train: SplitView, cache: Path, out_dir: Path,
                         batch_size: int = 128) -> Layer:
    """The teacher's logits for every training row, one layer file per shard (`teacher.logits`)."""
    view = embedded_view(teacher, train, cache)  # the frozen encoders' cache that training filled
    files = []
    for number, shard in enumerate(view.shards()):
        logits = predict_logits(teacher, shard, torch.device("cpu"), batch_size)
        files.append(Path(out_dir) / shard_name(number))
        write_shard(files[-1], {TEACHER: {"logits": logits}})
    return Layer((TEACHER,), tuple(files))


class DistillRecipe(TrainRecipe):
    """The training recipe on rows that carry the teacher's logits, with the distillation loss."""

    def __init__(self, params: Params, paths: Catalog, teacher_logits: Layer, cfg: DistillConfig) -> None:
        super().__init__(params, paths)
        self.teacher_logits, self.distill = teacher_logits, cfg

    def training_view(self, split: SplitView) -> SplitView:
        return split.with_layer(self.teacher_logits)

    def loss_sum(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        return distillation_loss_sum(logits, batch[TEACHER]["logits"], batch["labels"],
                                     self.distill.temperature, self.distill.alpha)


def distill(model_dir: Path, features_dir: Path, cache_dir: Path, cfg: DistillConfig, out_dir: Path) -> Path:
    """Train the student of the model in `model_dir` on `features_dir`; write its model folder to `out_dir`."""
    teacher = load_model_dir(model_dir)
    # the params as trained (pretrained sources, not the folder's config-only copies): the student builds from them
    params = student_params(Params.model_validate(load_checkpoint(model_dir)["params"]), cfg)
    paths = replace(Catalog.from_paths(params.paths), features=Path(features_dir), model=Path(out_dir),
                    cache=Path(cache_dir))
    with tempfile.TemporaryDirectory(prefix="mmops-teacher-logits-") as tmp:
        layer = write_teacher_logits(teacher.model, SplitView(split_file(features_dir, "train")), paths.embeddings,
                                     Path(tmp))
        recipe = DistillRecipe(params, paths, layer, cfg)
        recipe.setup()
        summary = recipe.train()
        recipe.finish(summary)
    return Path(out_dir)


def student_summary(params: Params) -> str:
    """The student's components in a few words: `width 64, text gru_text, image small_cnn_image [16, 32], ...`."""
    model = params.model
    parts = [f"width {model.width}"]
    for m in model.active():
        spec = getattr(model, m)
        channels = spec.options.get("channels")
        parts.append(f"{m} {spec.name}" + (f" {channels}" if channels else ""))
    return ", ".join(parts)


def distill_and_compare(model_dir: Path, features_dir: Path, cache_dir: Path, cfg: DistillConfig,
                        out_dir: Path) -> VariantReport:
    """Distil the model in `model_dir` into a student folder `out_dir` and compare the two on the test split."""
    distill(model_dir, features_dir, cache_dir, cfg, out_dir)
    student = load_model_dir(out_dir)  # what gets registered, loaded the way serving loads it
    trainable = sum(p.numel() for p in student.model.parameters() if p.requires_grad)
    details = {"student": student_summary(student.params), "student trainable parameters": trainable,
               "T": cfg.temperature, "alpha": cfg.alpha}
    return compare_variant("distilled", "Distilled student", load_model_dir(model_dir), model_dir, student, out_dir,
                           features_dir, cfg.max_accuracy_drop, details)
