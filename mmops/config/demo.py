"""Knobs of the built-in `avdigits` demo generator (`mmops/data/avdigits.py`): schema only."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
Decibels = Annotated[float, Field(ge=-40.0, le=60.0)]

DEFAULT_VOICES = [
    "en", "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
    "en-029", "en-us-nyc", "en+f2", "en+f3", "en+f4", "en+m3", "en+m5", "en+m7",
    "en-us+f2", "en-us+f5", "en-us+m2", "en-us+m4", "en-gb+f1", "en-gb+m6", "en+klatt",
    "en-us+klatt3", "en+croak", "en+Storm", "en-us+Alex", "en-gb+Annie", "en+Andy",
]  # fmt: skip


def _ordered(v: tuple) -> tuple:
    if v[0] > v[1]:
        raise ValueError(f"range must be (low, high), got {v}")
    return v


Range = Annotated[tuple[float, float], AfterValidator(_ordered)]
IntRange = Annotated[tuple[int, int], AfterValidator(_ordered)]
UnitRange = Annotated[tuple[Unit, Unit], AfterValidator(_ordered)]
DbRange = Annotated[tuple[Decibels, Decibels], AfterValidator(_ordered)]


SHIFT_VOICES = [
    "en+Michael", "en-us+Paul", "en-gb+Linda", "en+Steph", "en-us+klatt2", "en+m6",
    "en-029+Robert", "en-gb-scotland+grandma",
]  # fmt: skip
NoiseColour = Literal["white", "pink", "brown", "blue", "violet"]


def _voice_names(v: list[str]) -> list[str]:
    for name in v:
        if not re.fullmatch(r"[A-Za-z0-9_+\-]+", name):
            raise ValueError(f"not an espeak-ng voice name: {name!r}")
    return v


class ShiftConfig(BaseModel):
    """How `test_shifted` differs from the training pool (hard/missing conditions are kept)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    voices: Annotated[list[str], AfterValidator(_voice_names)] = Field(
        default_factory=lambda: list(SHIFT_VOICES), min_length=1, description="never used in train/val/test"
    )
    noise_colours: list[NoiseColour] = Field(["blue", "violet"], min_length=1)
    snr_db: DbRange = Field((8.0, 24.0), description="moderate samples: speech/noise SNR")
    digit_scale: UnitRange = Field((0.7, 0.9), description="digit side / image side")
    max_offset: float = Field(0.1, ge=0, le=0.4, description="max shift of the digit centre, fraction of the side")
    rate_wpm: IntRange = Field((115, 230), description="espeak-ng -s range")


class DemoConfig(BaseModel):
    """Knobs of the `avdigits` generator; the defaults are calibrated (see module docstring)."""

    model_config = ConfigDict(extra="forbid")

    n_samples: int = Field(1797, ge=30, le=1797, description="stratified subset of load_digits")
    seed: int = Field(7, ge=0)
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    # per-sample condition, mutually exclusive (the rest get moderate degradation only)
    p_image_hard: float = Field(0.30, ge=0, le=1, description="image heavily degraded")
    p_audio_hard: float = Field(0.30, ge=0, le=1, description="audio at a very low SNR")
    p_missing_image: float = Field(0.03, ge=0, le=1)
    p_missing_audio: float = Field(0.03, ge=0, le=1)
    p_missing_text: float = Field(0.10, ge=0, le=1, description="independent of the rest")
    p_text_filler: float = Field(0.20, ge=0, le=1, description="text present but no clue")
    # image
    image_size: int = Field(32, ge=8, le=256, description="PNG side in pixels (from 8x8)")
    image_noise_std: float = Field(0.06, ge=0, le=2, description="moderate: max pixel noise std")
    p_image_blur: float = Field(0.3, ge=0, le=1, description="moderate: chance of a light blur")
    blur_sigma: Range = Field((0.1, 0.4), description="moderate: blur, in 8x8 pixels")
    hard_noise_std: Range = Field((0.3, 0.5), description="hard: pixel noise std")
    hard_occlusion: UnitRange = Field((0.55, 0.8), description="hard: patch side / image side")
    hard_blur_sigma: Range = Field((0.6, 1.5), description="hard: blur, in 8x8 pixels")
    # audio
    sample_rate: int = Field(16000, ge=8000, le=48000)
    voices: list[str] = Field(default_factory=lambda: list(DEFAULT_VOICES), min_length=1)
    rate_wpm: IntRange = Field((130, 210), description="espeak-ng -s range")
    pitch: IntRange = Field((25, 75), description="espeak-ng -p range")
    max_lead_seconds: float = Field(0.25, ge=0, le=2, description="random silence before the word")
    clip_seconds: float = Field(1.5, gt=0.5, le=10, description="clip length (longer speech is cut)")
    snr_db: DbRange = Field((12.0, 35.0), description="moderate: speech/noise SNR")
    hard_snr_db: DbRange = Field((-18.0, -10.0), description="hard: SNR, speech-shaped noise")
    workers: int = Field(4, ge=1, le=64, description="espeak-ng processes in parallel")
    shifted: ShiftConfig = Field(ShiftConfig(), description="the `test_shifted` split")

    @field_validator("hard_noise_std", "blur_sigma", "hard_blur_sigma")
    @classmethod
    def _non_negative(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] < 0:
            raise ValueError(f"must be >= 0, got {v}")
        return v

    @field_validator("rate_wpm")
    @classmethod
    def _rate(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] < 80 or v[1] > 450:
            raise ValueError(f"espeak-ng rate must lie in [80, 450] wpm, got {v}")
        return v

    @field_validator("pitch")
    @classmethod
    def _pitch(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] < 0 or v[1] > 99:
            raise ValueError(f"espeak-ng pitch must lie in [0, 99], got {v}")
        return v

    @field_validator("voices")
    @classmethod
    def _voices(cls, v: list[str]) -> list[str]:
        return _voice_names(v)

    @model_validator(mode="after")
    def _consistent(self) -> "DemoConfig":
        if self.val_fraction + self.test_fraction > 0.5:
            raise ValueError("val_fraction + test_fraction must be <= 0.5 (train keeps the rest)")
        total = self.p_image_hard + self.p_audio_hard + self.p_missing_image + self.p_missing_audio
        if total > 1:
            raise ValueError(
                f"p_image_hard + p_audio_hard + p_missing_image + p_missing_audio = {total:.3f} > 1"
            )
        if self.shifted.enabled and (shared := set(self.voices) & set(self.shifted.voices)):
            raise ValueError(f"shifted.voices must be unseen in training; also in voices: {sorted(shared)}")
        return self


# --------------------------------------------------------------------------- text clues
