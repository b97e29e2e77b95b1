"""`auto` settings resolved from the training data (AutoGluon's `fit(df)`): classes, modalities,
text length, image size and colour, audio window and clip length.

Deterministic for a given dataset (sorted labels, evenly spaced samples), written next to the
features (`resolved.yaml`), stored with the model through the params in its checkpoint, and
printed in the run summary. A value pinned in params is kept and enforced instead.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from mmops.config import AUTO, MODALITIES, FeaturesConfig, ModelConfig
from mmops.config.resolved import Resolved
from mmops.data.profile import DatasetProfile, profile_dataset
from mmops.models import tokenizer_source

TEXT_SAMPLE = 2000  # texts tokenized to pick max_length
MEDIA_SAMPLE = 200  # images / clips whose headers are read


def resolve(classes: list[str] | str, features: FeaturesConfig, model: ModelConfig, rows: pd.DataFrame,
            data_dir: Path) -> Resolved:
    """Resolve every `auto` from the manifest `rows` (their `split` assigned) of the dataset in `data_dir`."""
    train = rows[rows["split"] == "train"]
    why: dict[str, str] = {}
    resolved_classes = list(classes) if classes != AUTO else sorted(set(train["label"]))
    modalities, why["modalities"] = _modalities(model, rows)
    profile = profile_dataset(data_dir, sample_images=MEDIA_SAMPLE, sample_audio=MEDIA_SAMPLE)
    features = features.model_copy(deep=True)
    tokenizer = tokenizer_source(model.model_copy(update={"modalities": modalities}))
    why["text"] = _text(features, train, tokenizer) if "text" in modalities else "no text"
    why["image"] = _image(features, profile) if "image" in modalities else "no images"
    why["audio"] = _audio(features, profile) if "audio" in modalities else "no audio"
    return Resolved(classes=resolved_classes, modalities=modalities, features=features, why=why)


def _modalities(model: ModelConfig, rows: pd.DataFrame) -> tuple[list[str], str]:
    present = [m for m in MODALITIES if m in rows.columns and (rows[m].astype(str).str.strip() != "").any()]
    if model.modalities != AUTO:
        return list(model.modalities), "pinned in params"
    if not present:
        raise ValueError("the manifest has no text, image or audio column with data: nothing to learn from")
    absent = [m for m in MODALITIES if m not in present]
    return present, "columns with data" + (f"; none in {', '.join(absent)}" if absent else "")


def _evenly(items: list, k: int) -> list:
    if len(items) <= k:
        return items
    step = len(items) / k
    return [items[int(i * step)] for i in range(k)]


def _text(features: FeaturesConfig, train: pd.DataFrame, tokenizer_path: str | None) -> str:
    cfg = features.text
    if cfg.max_length != AUTO:
        return "pinned in params"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    texts = _evenly(sorted(t for t in train.get("text", pd.Series(dtype=str)).astype(str) if t.strip()), TEXT_SAMPLE)
    longest = max((len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]), default=8)
    limit = min(cfg.max_length_cap, _encoder_limit(tokenizer, tokenizer_path))
    features.text.max_length = max(8, min(limit, 8 * math.ceil(longest / 8)))
    capped = " (capped)" if 8 * math.ceil(longest / 8) > limit else ""
    return f"longest of {len(texts)} training texts: {longest} tokens{capped}"


def _encoder_limit(tokenizer, path: str | None) -> int:
    """The most tokens the text encoder takes: the tokenizer's limit and the model's position table."""
    from transformers import AutoConfig

    limits = [getattr(tokenizer, "model_max_length", None)]
    try:
        limits.append(getattr(AutoConfig.from_pretrained(path), "max_position_embeddings", None))
    except (OSError, ValueError):  # a tokenizer-only folder (e.g. gru_text): no position limit
        pass
    return min((int(x) for x in limits if x and x < 1_000_000), default=512)


def _image(features: FeaturesConfig, profile: DatasetProfile) -> str:
    cfg, im = features.image, profile.image
    reasons = []
    if cfg.size == AUTO:
        if im is None or im.width is None or im.height is None:
            cfg.size = 32
            reasons.append("no readable image: 32 px")
        else:
            shorter = min(im.width.median, im.height.median)
            cfg.size = int(min(cfg.size_cap, max(16, 8 * round(shorter / 2 / 8))))
            reasons.append(f"half the median shorter side ({shorter:g} px), 16..{cfg.size_cap}")
    if cfg.mode == "auto":
        colour = (im.colour_fraction or 0.0) if im is not None else 0.0
        cfg.mode = "rgb" if colour > 0 else "grey"
        reasons.append(f"{colour:.0%} of sampled images in colour")
    return "; ".join(reasons) or "pinned in params"


def _audio(features: FeaturesConfig, profile: DatasetProfile) -> str:
    cfg, au = features.audio, profile.audio
    if au is None or au.duration_s is None:
        durations = (1.5, 1.5)
        reason = "no readable clip: 1.5 s"
    else:
        durations = (au.duration_s.p95, au.duration_s.max)
        reason = f"95th percentile / longest of {au.n_sampled} sampled clips"
    tenth = lambda s: min(cfg.clip_seconds_cap, max(0.5, math.ceil(round(s, 3) * 10) / 10))  # noqa: E731
    if cfg.max_seconds == AUTO:
        cfg.max_seconds = tenth(durations[0])
    if cfg.max_clip_seconds == AUTO:
        cfg.max_clip_seconds = max(tenth(durations[1]), float(cfg.max_seconds))
    return reason
