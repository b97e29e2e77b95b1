"""The generated reviews of the reference-system tests: the contract they rely on, deterministic."""

from __future__ import annotations

import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

from datagen.reviews import CLASSES, IMAGE_SIZE, PHRASES, SAMPLE_RATE, make_reviews


def test_reviews_are_deterministic_and_keep_the_contract(tmp_path):
    a = make_reviews(tmp_path / "a", n_per_class=4, seed=1)
    b = make_reviews(tmp_path / "b", n_per_class=4, seed=1)
    files = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    df = pd.read_csv(a / "manifest.csv", dtype=str, keep_default_na=False)
    assert list(df.columns) == ["sample_id", "label", "text", "image", "audio"]
    assert df["label"].value_counts().to_dict() == {c: 4 for c in CLASSES}
    assert ((df[["text", "image", "audio"]] != "").sum(axis=1) >= 2).all()  # at most one modality missing
    for _, row in df.iterrows():
        if row["text"]:
            assert any(p in row["text"] for p in PHRASES[CLASSES.index(row["label"])])
        if row["image"]:
            assert Image.open(a / row["image"]).size == IMAGE_SIZE
        if row["audio"]:
            assert sf.info(str(a / row["audio"])).samplerate == SAMPLE_RATE


def test_an_image_text_set_has_no_audio_column(tmp_path):
    root = make_reviews(tmp_path, n_per_class=3, modalities=("text", "image"))
    assert list(pd.read_csv(root / "manifest.csv", nrows=1).columns) == ["sample_id", "label", "text", "image"]
    assert not (root / "audio").exists()
    with pytest.raises(ValueError, match="subset"):
        make_reviews(tmp_path / "bad", modalities=("video",))
