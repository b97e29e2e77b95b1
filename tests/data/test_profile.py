"""The dataset card: `profile_dataset` on generated datasets unlike the demo (no training)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from datagen.unlike_demo import make_dataset
from mmops.data.profile import DatasetProfile, profile_dataset

CLASSES = ("negative", "neutral", "positive")
N_PER_CLASS = 12


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("full"), n_per_class=N_PER_CLASS, variant="full")


@pytest.fixture(scope="module")
def no_audio(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("no_audio"), n_per_class=N_PER_CLASS, variant="no_audio")


def test_full_variant(full):
    p = profile_dataset(full)
    n = N_PER_CLASS * len(CLASSES)
    assert p.n_rows == n and not p.has_split and p.splits == {}
    assert p.classes == {c: N_PER_CLASS for c in CLASSES}
    assert p.imbalance_ratio == 1.0
    assert p.present_modalities == ["text", "image", "audio"]
    df = pd.read_csv(full / "manifest.csv", dtype=str, keep_default_na=False)
    for m in ("text", "image", "audio"):
        cov = p.modalities[m]
        assert cov.column and cov.non_empty == int((df[m] != "").sum())
        assert 0.7 <= cov.fraction < 1.0  # ~15 % of rows miss one modality
    # images: every one sampled (fewer than 200), all colour, mixed sizes and formats
    assert p.image.n_sampled == p.modalities["image"].non_empty
    assert p.image.n_unreadable == p.image.n_missing_files == 0
    assert p.image.colour_fraction > 0.9
    assert 64 <= p.image.width.min and p.image.width.max <= 320 and p.image.width.max > p.image.width.min
    assert set(p.image.formats) == {"PNG", "JPEG"} and set(p.image.modes) == {"RGB"}
    # audio: headers of four containers at three rates
    assert set(p.audio.sample_rates) == {44100, 22050, 16000}
    assert set(p.audio.channels) == {1, 2}
    assert set(p.audio.formats) == {"WAV", "FLAC", "MP3"}
    assert 2.0 <= p.audio.duration_s.min <= p.audio.duration_s.median <= p.audio.duration_s.p95 <= p.audio.duration_s.max <= 4.01
    assert 20 <= p.text.words.min and p.text.words.max <= 84
    assert p.duplicates.sample_ids == 0 and p.duplicates.media_paths == {"image": 0, "audio": 0}
    assert p.warnings == []


def test_no_audio_variant(no_audio):
    p = profile_dataset(no_audio)
    assert "audio" not in p.columns
    assert p.modalities["audio"].column is False and p.modalities["audio"].fraction == 0.0
    assert p.present_modalities == ["text", "image"]
    assert p.audio is None and p.image is not None
    assert p.classes == {c: N_PER_CLASS for c in CLASSES}
    assert p.image.colour_fraction > 0.9


def test_sampling_is_bounded_and_deterministic(full):
    a = profile_dataset(full, sample_images=5, sample_audio=4)
    assert a.image.n_sampled == 5 and a.audio.n_sampled == 4
    assert a.image.n_media == a.modalities["image"].non_empty
    assert a.model_dump_json() == profile_dataset(full, sample_images=5, sample_audio=4).model_dump_json()
    none = profile_dataset(full, sample_images=0, sample_audio=0)
    assert none.image.n_sampled == 0 and none.image.width is None and none.image.colour_fraction is None


def test_json_round_trip_and_markdown(full):
    p = profile_dataset(full)
    again = DatasetProfile.model_validate_json(p.model_dump_json())
    assert again == p
    assert json.loads(p.model_dump_json())["audio"]["sample_rates"].keys() == {"44100", "22050", "16000"}
    md = p.markdown()
    for needle in ("# Dataset profile", "| `neutral` | 12 |", "44100", "MP3", "colour: 100.0%", "No `split` column"):
        assert needle in md


def test_splits_duplicates_missing_files_and_empty_column(tmp_path, no_audio):
    df = pd.read_csv(no_audio / "manifest.csv", dtype=str, keep_default_na=False)
    df.insert(1, "split", ["train", "train", "val", "test"] * (len(df) // 4) + ["train"] * (len(df) % 4))
    with_image = df.index[df["image"] != ""]
    df.loc[with_image[1], "image"] = df.loc[with_image[0], "image"]  # two rows share one file
    df.loc[with_image[2], "image"] = "images/nowhere.png"
    df = pd.concat([df, df.loc[[with_image[3]]]], ignore_index=True)  # a repeated row
    df["audio"] = ""  # a column with no data
    (tmp_path / "images").symlink_to(no_audio / "images")
    df.to_csv(tmp_path / "manifest.csv", index=False)
    p = profile_dataset(tmp_path)
    assert p.has_split and sum(p.splits.values()) == len(df) and set(p.splits) == {"train", "val", "test"}
    assert sum(p.classes_per_split["val"].values()) == p.splits["val"]
    # distinct values held by several rows: one sample_id; two image paths (shared, repeated row)
    assert p.duplicates.sample_ids == 1 and p.duplicates.media_paths["image"] == 2
    assert p.image.n_missing_files == 1
    assert p.modalities["audio"].column and p.modalities["audio"].non_empty == 0 and p.audio is None
    assert p.present_modalities == ["text", "image"]
    text = " ".join(p.warnings)
    assert "every cell is empty" in text and "sample_id" in text and "missing" in text
    md = p.markdown()
    assert "| class | total | test | train | val |" in md


def test_profile_imports_neither_torch_nor_transformers(full):
    code = (
        "import sys; from mmops.data.profile import profile_dataset; "
        f"profile_dataset({str(full)!r}); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'torchaudio')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
