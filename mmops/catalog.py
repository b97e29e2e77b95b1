"""The catalogue: every file a stage hands to another, named once (Kedro's catalog).

`Catalog` resolves the names against `params.paths` (and a dataset folder given on the command
line); stages, the flow's cache and the registry ask it for paths instead of joining strings.
`dvc.yaml` names the same files for DVC; a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from mmops.config import PathsConfig

# data/
DEMO_STAMP = ".demo-config.json"  # written by the demo generator beside its manifest
# reports/
VALIDATION_JSON = "validation.json"
VALIDATION_MD = "validation.md"
REGISTRY_JSON = "registry.json"
GATE_MD = "gate.md"
# features/
# one folder of shards per split (mmops.features.shards): train/, val/, test/, test_shifted/
SPLITS_CSV = "splits.csv"
FEATURES_META = "meta.json"
RESOLVED_YAML = "resolved.yaml"  # what each `auto` in params stood for on this data
# model/ (the model folder format itself is owned by mmops.inference.model_dir)
CHECKPOINT = "checkpoint.pt"
INT8_CHECKPOINT = "checkpoint_int8.pt"
TEXT_BACKBONE = "text_backbone"
AUDIO_BACKBONE = "audio_backbone"
BASE_WEIGHTS = "base_weights.json"  # frozen pretrained tensors referenced by sha256, not stored
# beside model/ (never inside it: the model folder is what gets registered)
RESUME_STATE = "last.pt"  # training-resume state, written every epoch; never registered
TRAIN_STATE_SUFFIX = ".train_state"  # <model>.train_state/last.pt
HISTORY_JSON = "history.json"
# metrics/
METRICS_JSON = "metrics.json"
PER_CLASS_JSON = "per_class.json"
SHIFT_MD = "shift.md"
# cache/
STAGE_STAMPS = "stages"
EMBEDDINGS = "embeddings"
FEATURE_CACHE = "features"


@dataclass(frozen=True)
class Catalog:
    """Where each stage reads and writes, resolved from `params.paths`."""

    data: Path
    reports: Path
    features: Path
    model: Path
    metrics: Path
    cache: Path

    @classmethod
    def from_paths(cls, paths: PathsConfig, data: str | Path | None = None) -> "Catalog":
        return cls(
            data=Path(data) if data is not None else Path(paths.data),
            reports=Path(paths.reports), features=Path(paths.features), model=Path(paths.model),
            metrics=Path(paths.metrics), cache=Path(paths.cache),
        )

    def with_data(self, data: str | Path | None) -> "Catalog":
        return self if data is None else replace(self, data=Path(data))

    @property
    def validation_json(self) -> Path:
        return self.reports / VALIDATION_JSON

    @property
    def validation_md(self) -> Path:
        return self.reports / VALIDATION_MD

    @property
    def registry_json(self) -> Path:
        return self.reports / REGISTRY_JSON

    @property
    def gate_md(self) -> Path:
        return self.reports / GATE_MD

    def split(self, name: str) -> Path:
        return split_file(self.features, name)

    @property
    def splits_csv(self) -> Path:
        return self.features / SPLITS_CSV

    @property
    def features_meta(self) -> Path:
        return self.features / FEATURES_META

    @property
    def resolved(self) -> Path:
        return self.features / RESOLVED_YAML

    @property
    def resume_state(self) -> Path:
        """The training-resume state of `model` (beside the model folder, so never registered)."""
        return resume_state_file(self.model)

    @property
    def metrics_json(self) -> Path:
        return self.metrics / METRICS_JSON

    @property
    def stage_stamps(self) -> Path:
        return self.cache / STAGE_STAMPS

    @property
    def embeddings(self) -> Path:
        return self.cache / EMBEDDINGS

    @property
    def feature_cache(self) -> Path:
        return self.cache / FEATURE_CACHE


def split_file(features_dir: str | Path, split: str) -> Path:
    """The folder of one featurized split (its shards and `index.json`)."""
    return Path(features_dir) / split


def resume_state_file(model_dir: str | Path) -> Path:
    """Where training keeps the resume state of the model folder `model_dir`: a sibling folder
    (`artifacts/model.train_state/last.pt`), one per model folder, outside what is registered."""
    model_dir = Path(model_dir)
    return model_dir.with_name(model_dir.name + TRAIN_STATE_SUFFIX) / RESUME_STATE
