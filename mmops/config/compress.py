"""Compression variants trained from the fp32 model at register: a distilled student and a pruned copy.

Each is compared with the fp32 model on the test split (accuracy drop, size and latency ratios) and
registered as a variant only when its accuracy drop is within its `max_accuracy_drop`
(mmops/compress/distill.py, mmops/compress/prune.py).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def default_student() -> dict[str, Any]:
    """The demo model (params.yaml) halved: width 64, a GRU over the same token ids instead of the
    transformer, half the conv channels, a head of 128."""
    return {
        "width": 64,
        "text": {"name": "gru_text", "options": {"embedding_dim": 32, "hidden": 48}},
        "image": {"options": {"channels": [16, 32]}},
        "audio": {"options": {"channels": [8, 16, 32]}},
        "head": {"hidden": 128},
    }


class DistillConfig(Strict):
    """A smaller student trained on the fp32 model's soft labels and the hard labels."""

    enabled: bool = False
    student: dict[str, Any] = Field(
        default_factory=default_student,
        description="partial `model:` overrides for the student, merged into the teacher's model config; a "
        "component whose `name` changes takes only these options (plus the teacher's tokenizer, `pretrained`)",
    )
    temperature: float = Field(4.0, gt=0, le=100, description="T: both softmaxes are taken of logits / T")
    alpha: float = Field(
        0.7, ge=0, le=1, description="loss = alpha * KL(teacher_T || student_T) * T^2 + (1 - alpha) * CE(labels)"
    )
    epochs: int | Literal["auto"] = Field("auto", description="student epochs; auto: the training budget's (~600 steps)")
    lr: float = Field(3e-3, gt=0)
    max_accuracy_drop: float = Field(
        0.02, ge=-1, le=1, description="fp32 accuracy - student accuracy on the test split must be <= this"
    )

    @field_validator("student")
    @classmethod
    def _model_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = sorted(set(v) - {"width", "text", "image", "audio", "fusion", "head", "modality_dropout"})
        if bad:
            raise ValueError(f"distill.student: {bad} cannot differ from the teacher (the features are shared)")
        return v


class PruneConfig(Strict):
    """Magnitude pruning of the trainable Conv2d/Linear weights (frozen encoders are left whole), a
    short fine-tune with the masks on, then the masks made permanent."""

    enabled: bool = False
    method: Literal["l1_unstructured", "ln_structured"] = Field(
        "l1_unstructured",
        description="l1_unstructured: the smallest |w| over all pruned weights at once (global); ln_structured: "
        "per layer, the output channels / rows of least L2 norm (zeroed in place, the tensors keep their shape)",
    )
    amount: float = Field(0.5, gt=0, lt=1, description="share of weights (or of channels / rows) set to zero")
    epochs: int = Field(3, ge=1, description="fine-tuning epochs with the masks on (the best on val is kept)")
    lr: float = Field(5e-4, gt=0)
    max_accuracy_drop: float = Field(
        0.01, ge=-1, le=1, description="fp32 accuracy - pruned accuracy on the test split must be <= this"
    )
