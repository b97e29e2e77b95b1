"""The built-in demo dataset `avdigits`: contract, media, determinism, clues, config."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image
from pydantic import ValidationError

from mmops.config.demo import SHIFT_VOICES, DemoConfig, ShiftConfig
from mmops.data.avdigits import WORDS, generate, make_clue, names_digit

CLASSES = [str(d) for d in range(10)]
N = 90

def _read(manifest) -> pd.DataFrame:
    return pd.read_csv(manifest, dtype=str, keep_default_na=False, encoding="utf-8")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("avdigits")
    manifest = generate(out, DemoConfig(n_samples=N, seed=3), CLASSES)
    return out, manifest, _read(manifest)


def test_manifest_columns_labels_and_splits(dataset):
    out, manifest, df = dataset
    assert manifest == out / "manifest.csv"
    assert list(df.columns) == ["sample_id", "split", "label", "text", "image", "audio"]
    assert (df.split != "test_shifted").sum() == N and df.sample_id.is_unique
    assert set(df.label) == set(CLASSES)
    assert set(df.split) == {"train", "val", "test", "test_shifted"}
    for split in ("val", "test"):  # stratified: every class in every split
        assert set(df.label[df.split == split]) == set(CLASSES)
    frac = df.split[df.split != "test_shifted"].value_counts(normalize=True)
    assert 0.6 <= frac["train"] <= 0.8


def test_media_exist_and_decode(dataset):
    out, _, df = dataset
    for rel in df.image[df.image != ""]:
        assert re.fullmatch(r"images/s\d{5}\.png", rel)
        with Image.open(out / rel) as img:
            assert img.mode == "L" and img.size == (32, 32)
            img.load()
    durations = []
    for rel in df.audio[df.audio != ""]:
        assert re.fullmatch(r"audio/s\d{5}\.wav", rel)
        info = sf.info(out / rel)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        wave, _ = sf.read(out / rel, dtype="float32")
        assert np.abs(wave).max() > 0.1
        durations.append(info.duration)
    assert 0.5 < min(durations) and max(durations) <= 1.5 + 1e-3
    # no stray files beyond those the manifest names
    assert len(list((out / "images").iterdir())) == (df.image != "").sum()
    assert len(list((out / "audio").iterdir())) == (df.audio != "").sum()


def test_missing_modalities_some_but_never_all(dataset):
    _, _, df = dataset
    missing = df[["text", "image", "audio"]] == ""
    assert missing.any(axis=0).sum() >= 2  # at least two modalities are missing somewhere
    assert not missing.all(axis=1).any()


def test_clues_never_name_their_digit(dataset):
    _, _, df = dataset
    for label, text in zip(df.label, df.text):
        assert not names_digit(text, int(label)), (label, text)
        assert label not in re.findall(r"\d", text) and not re.search(rf"\b{WORDS[int(label)]}\b", text.lower())


def test_clue_templates_exhaustively():
    mentions_other = 0
    for digit in range(10):
        rng = np.random.default_rng(digit)
        for _ in range(400):
            text = make_clue(digit, rng)
            assert text and not names_digit(text, digit), (digit, text)
            assert str(digit) not in text and not re.search(rf"\b{WORDS[digit]}\b", text.lower())
            mentions_other += any(names_digit(text, d) for d in range(10))
    assert mentions_other > 0  # comparisons with other numbers do occur


def test_names_digit_is_word_exact():
    assert names_digit("greater than 3", 3) and names_digit("less than Three", 3)
    assert not names_digit("someone done, no hint", 1)
    assert not names_digit("greater than 4", 3)


def test_deterministic_and_rerun_clean(tmp_path):
    cfg = DemoConfig(n_samples=40, seed=11, workers=3)
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "images").mkdir(parents=True)
    (a / "images" / "stale.png").write_bytes(b"old")  # a previous run's leftover
    generate(a, cfg, CLASSES)
    generate(b, cfg.model_copy(update={"workers": 1}), CLASSES)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and "images/stale.png" not in map(str, files_a)
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    c = tmp_path / "c"
    generate(c, cfg.model_copy(update={"seed": 12}), CLASSES)
    assert (c / "manifest.csv").read_bytes() != (a / "manifest.csv").read_bytes()


def test_missing_espeak_is_explained(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        generate(tmp_path, DemoConfig(n_samples=30), CLASSES)


def test_defaults_cover_all_of_load_digits():
    cfg = DemoConfig()
    assert cfg.n_samples == 1797 and cfg.sample_rate == 16000


@pytest.mark.parametrize(
    "bad",
    [
        {"n_samples": 5},
        {"n_samples": 5000},
        {"seed": -1},
        {"val_fraction": 0.0},
        {"val_fraction": 0.3, "test_fraction": 0.3},
        {"p_image_hard": 1.5},
        {"p_image_hard": 0.6, "p_audio_hard": 0.6},
        {"snr_db": (30.0, 5.0)},
        {"hard_snr_db": (-100.0, -10.0)},
        {"hard_occlusion": (0.5, 1.5)},
        {"rate_wpm": (10, 200)},
        {"pitch": (20, 150)},
        {"voices": []},
        {"voices": ["en; rm -rf /"]},
        {"image_size": 4},
        {"workers": 0},
        {"no_such_knob": 1},
    ],
)
def test_bad_config_is_rejected(bad):
    with pytest.raises(ValidationError):
        DemoConfig(**bad)


def test_config_round_trips_through_json():
    cfg = DemoConfig(n_samples=100, snr_db=(10, 20))
    assert DemoConfig.model_validate(cfg.model_dump(mode="json")) == cfg


def _ink_extent(png) -> float:
    """Height of the bright (ink) region as a fraction of the image side."""
    with Image.open(png) as img:
        x = np.asarray(img, dtype=np.float64)
    ys = np.nonzero(x > 0.5 * x.max())[0]
    return (np.ptp(ys) + 1) / x.shape[0]


def test_shifted_split_renders_the_test_digits_differently(dataset):
    """`test_shifted` = the test digits and their conditions again, smaller/off-centre and noisier."""
    out, _, df = dataset
    test, shifted = df[df.split == "test"], df[df.split == "test_shifted"]
    assert len(shifted) == len(test) and sorted(shifted.label) == sorted(test.label)
    assert ((shifted.image == "") == (test.image == "").to_numpy()).all()  # same missing pattern
    extents_test = [_ink_extent(out / r) for r in test.image[test.image != ""]]
    extents_shift = [_ink_extent(out / r) for r in shifted.image[shifted.image != ""]]
    assert np.median(extents_shift) < np.median(extents_test) - 0.1  # digits drawn smaller


def test_shifted_noise_is_bluer(tmp_path):
    """Moderate shifted clips carry high-frequency (blue/violet) noise the training pool never has."""
    cfg = DemoConfig(n_samples=30, seed=5, p_audio_hard=0.0, p_image_hard=0.0)
    generate(tmp_path, cfg, CLASSES)
    df = _read(tmp_path / "manifest.csv")

    def high_band_share(rel) -> float:
        wave, rate = sf.read(tmp_path / rel, dtype="float64")
        power = np.abs(np.fft.rfft(wave)) ** 2
        f = np.fft.rfftfreq(wave.size, 1 / rate)
        return power[f > 5000].sum() / power.sum()

    share = {s: np.median([high_band_share(r) for r in df.audio[(df.split == s) & (df.audio != "")]])
             for s in ("test", "test_shifted")}
    assert share["test_shifted"] > 3 * share["test"], share


def test_shifted_voices_must_be_unseen_and_can_be_disabled(tmp_path):
    with pytest.raises(ValidationError, match="unseen in training"):
        DemoConfig(voices=["en", SHIFT_VOICES[0]])
    generate(tmp_path, DemoConfig(n_samples=30, shifted=ShiftConfig(enabled=False)), CLASSES)
    assert "test_shifted" not in set(_read(tmp_path / "manifest.csv").split)


def test_shifted_clips_use_only_unseen_voices(tmp_path, monkeypatch):
    import mmops.data.avdigits as avdigits

    used: dict[str, str] = {}
    real = avdigits._espeak

    def spy(word, voice, rate, pitch, tmp, name):
        used[name] = voice
        return real(word, voice, rate, pitch, tmp, name)

    monkeypatch.setattr(avdigits, "_espeak", spy)
    cfg = DemoConfig(n_samples=40, seed=2)
    df = _read(generate(tmp_path, cfg, CLASSES))
    split = dict(zip(df.sample_id, df.split))
    shifted_voices = {v for sid, v in used.items() if split[sid] == "test_shifted"}
    pool_voices = {v for sid, v in used.items() if split[sid] != "test_shifted"}
    assert shifted_voices and shifted_voices <= set(SHIFT_VOICES)
    assert pool_voices and not pool_voices & set(SHIFT_VOICES)
