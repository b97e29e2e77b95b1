"""What each `auto` setting stood for on one dataset (`resolved.yaml` beside the features).

A plain record, importable without torch or pandas: `mmops run` reads it to print the summary of
a run it did not have to repeat. `mmops.features.auto` resolves it from the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from mmops.atomic import atomic_write_text
from mmops.config import AUTO, FeaturesConfig, ModelConfig, Params


class Resolved(BaseModel):
    """The concrete values `auto` stood for, and why each was picked."""

    classes: list[str]
    modalities: list[str]
    features: FeaturesConfig
    why: dict[str, str]

    def write(self, path: Path) -> None:
        atomic_write_text(path, yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))

    @classmethod
    def read(cls, path: Path) -> "Resolved":
        return cls.model_validate(yaml.safe_load(Path(path).read_text()))

    def model_for(self, given: ModelConfig) -> ModelConfig:
        return given.model_copy(update={"modalities": list(self.modalities)}) if given.modalities == AUTO else given

    def features_for(self, given: FeaturesConfig) -> FeaturesConfig:
        """`given` with each `auto` replaced by its resolved value (pinned values stay)."""
        sections: dict[str, Any] = {}
        for name in ("text", "image", "audio"):
            mine, theirs = getattr(given, name), getattr(self.features, name)
            sections[name] = mine.model_copy(update={k: getattr(theirs, k) for k, v in mine if v == AUTO})
        return given.model_copy(update=sections)

    def apply(self, params: Params) -> Params:
        """`params` with each `auto` replaced by its resolved value (pinned values stay)."""
        return params.model_copy(update={
            "classes": list(self.classes) if params.classes == AUTO else params.classes,
            "model": self.model_for(params.model),
            "features": self.features_for(params.features),
        })

    def summary(self) -> list[tuple[str, str]]:
        """(setting, value and reason) rows for a run summary."""
        f = self.features
        return [
            ("classes", f"{len(self.classes)}: {', '.join(self.classes[:12])}{' ...' if len(self.classes) > 12 else ''}"),
            ("modalities", f"{', '.join(self.modalities)} ({self.why['modalities']})"),
            ("text max_length", f"{f.text.max_length} ({self.why['text']})"),
            ("image size / mode", f"{f.image.size} px {f.image.mode} ({self.why['image']})"),
            ("audio window / clip", f"{f.audio.max_seconds} s / {f.audio.max_clip_seconds} s ({self.why['audio']})"),
        ]
