"""Validation knobs: every rule's severity and every bound, each with a default."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Severity = Literal["error", "warning", "off"]

# Always errors, not configurable: nothing else can be checked without a readable manifest.
MANIFEST_RULES: tuple[str, ...] = (
    "manifest_exists",
    "manifest_encoding",
    "manifest_readable",
    "manifest_not_empty",
)

# Rules on the table (Great Expectations for the core ones, pandas for the aggregates).
TABLE_RULES: dict[str, Severity] = {
    "required_columns": "error",
    "sample_id_not_null": "error",
    "sample_id_unique": "error",
    "label_not_null": "error",
    "label_in_classes": "error",
    "split_in_set": "error",
    "text_length": "error",
    "duplicate_rows": "error",
    "modality_present": "error",
    "min_samples_per_class_split": "error",
    "class_balance": "error",
    "class_balance_mild": "warning",
    # a heuristic with false positives (a Luhn-valid order number, a version number that reads as
    # an IP): a warning by default; `error` refuses data that must hold none, `off` skips the scan
    "pii": "warning",
}

# Rules on the media files the manifest names.
FILE_RULES: dict[str, Severity] = {
    "path_inside_dataset": "error",
    "file_exists": "error",
    "media_type_matches": "error",
    "image_decodes": "error",
    "image_size": "error",
    "image_mode": "error",
    "audio_decodes": "error",
    "audio_not_empty": "error",
    "audio_finite": "error",
    "audio_duration": "error",
    "audio_sample_rate": "error",
    "split_leakage": "error",
}

DEFAULT_SEVERITY: dict[str, Severity] = {**TABLE_RULES, **FILE_RULES}
RULES: tuple[str, ...] = MANIFEST_RULES + tuple(DEFAULT_SEVERITY)

# `workers: auto` adds a checking process per this many media files; fewer files are checked in the
# caller alone. A spawned worker needs about 1-2 s of CPU to start (interpreter, numpy, PIL, pandas,
# pydantic): as long as checking 1,000-1,500 photo-sized files (224 px JPEG + 1-5 s WAV, about 1.1 ms
# each) takes in-process. The caller checks while workers start, so with fewer files a worker would
# join too late to take any. `bench/bench_validate.py --crossover` measures 1 vs 2 workers on 50..6,000 files.
AUTO_FILES_PER_WORKER = 1_000


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, not the machine's count)."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13+
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def load_average() -> float:
    """Runnable processes over the last minute (0 where the OS does not say)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")
AUDIO_FORMATS = ("WAV", "FLAC", "OGG", "MP3")


class ValidateConfig(BaseModel):
    """Knobs of the data contract; `severity` overrides merge over the defaults."""

    model_config = ConfigDict(extra="forbid")

    severity: dict[str, Severity] = Field(
        default_factory=lambda: dict(DEFAULT_SEVERITY),
        description="rule -> error | warning | off; rules not named keep their default",
    )
    required_columns: list[str] = Field(
        default_factory=lambda: ["sample_id", "label"],
        description="columns the manifest must have; `split` is optional (absent: the pipeline splits) and any "
        "subset of text/image/audio may be present (modality_present: each row needs one)",
    )
    text_min_chars: int = Field(1, ge=0, description="bounds on non-empty text cells")
    text_max_chars: int = Field(10_000, ge=1)
    min_samples_per_class: int = Field(1, ge=0, description="per class in each of train/val/test")
    class_balance_min_ratio: float = Field(
        0.1, ge=0, le=1, description="least / most frequent class count below this: class_balance"
    )
    class_balance_warn_ratio: float = Field(
        0.5, ge=0, le=1, description="below this (but above the floor): class_balance_mild"
    )
    image_formats: list[str] = Field(default_factory=lambda: ["PNG", "JPEG"])
    image_min_side: int = Field(4, ge=1, description="pixels, both width and height")
    image_max_side: int = Field(4096, ge=1)
    image_modes: list[str] = Field(default_factory=lambda: ["1", "L", "LA", "P", "RGB", "RGBA"])
    audio_formats: list[str] = Field(default_factory=lambda: ["WAV", "FLAC", "OGG", "MP3"])
    audio_min_sample_rate: int = Field(8_000, ge=1)
    audio_max_sample_rate: int = Field(48_000, ge=1)
    audio_min_duration_s: float = Field(0.05, ge=0)
    audio_max_duration_s: float = Field(30.0, gt=0)
    workers: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = Field(
        "auto",
        description="processes that run the file checks, this one included (1: only this one); auto: one more "
        f"per {AUTO_FILES_PER_WORKER} media files, at most the usable CPUs, and at most 1 + the CPUs idle by the "
        "1-minute load average (a busy machine gains nothing from more processes)",
    )
    max_ids: int = Field(10, ge=1, description="sample ids listed per failed rule")
    pii_columns: list[str] | None = Field(
        None,
        description="columns the pii rule scans for e-mails, phones, cards, IBANs and IP addresses; null: "
        "every column but split, image and audio (a split name and media paths)",
    )

    @field_validator("severity", mode="before")
    @classmethod
    def _yaml_booleans(cls, v: object) -> object:
        """YAML 1.1 reads a bare `off` as False (and `on` as True): take them as 'off' / 'error'."""
        if isinstance(v, dict):
            return {k: ("off" if x is False else "error" if x is True else x) for k, x in v.items()}
        return v

    @field_validator("severity")
    @classmethod
    def _known_rules(cls, v: dict[str, Severity]) -> dict[str, Severity]:
        unknown = sorted(set(v) - set(DEFAULT_SEVERITY))
        if unknown:
            fixed = sorted(set(unknown) & set(MANIFEST_RULES))
            hint = f" ({', '.join(fixed)} are always errors)" if fixed else ""
            raise ValueError(f"unknown rule(s) {unknown}{hint}; known: {sorted(DEFAULT_SEVERITY)}")
        return {**DEFAULT_SEVERITY, **v}

    @field_validator("image_formats", "audio_formats")
    @classmethod
    def _known_formats(cls, v: list[str], info) -> list[str]:
        known = IMAGE_FORMATS if info.field_name == "image_formats" else AUDIO_FORMATS
        v = [f.upper() for f in v]
        bad = [f for f in v if f not in known]
        if bad:
            raise ValueError(f"unknown format(s) {bad}; known: {list(known)}")
        return v

    @model_validator(mode="after")
    def _bounds_ordered(self) -> ValidateConfig:
        pairs = [
            ("text_min_chars", "text_max_chars"),
            ("image_min_side", "image_max_side"),
            ("audio_min_sample_rate", "audio_max_sample_rate"),
            ("audio_min_duration_s", "audio_max_duration_s"),
            ("class_balance_min_ratio", "class_balance_warn_ratio"),
        ]
        for lo, hi in pairs:
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"{lo} ({getattr(self, lo)}) must not exceed {hi} ({getattr(self, hi)})")
        return self

    def resolved_workers(self, n_files: int) -> int:
        """How many processes check `n_files` media files: `workers`, or for auto 1 (this process alone)
        below AUTO_FILES_PER_WORKER files and one more per AUTO_FILES_PER_WORKER, capped by the usable
        CPUs and by 1 + the CPUs left idle by the load (as `make -l` does): where other work already
        keeps the cores busy, a worker only adds its start-up."""
        if self.workers != "auto":
            return int(self.workers)
        cpus = usable_cpus()
        idle = round(max(0.0, cpus - load_average()))
        return max(1, min(cpus, 1 + n_files // AUTO_FILES_PER_WORKER, 1 + idle))

    def severity_of(self, rule: str) -> Severity:
        """The severity of a rule; manifest rules are always errors."""
        return "error" if rule in MANIFEST_RULES else self.severity[rule]
