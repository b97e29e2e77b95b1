"""The media file rules, each broken on purpose."""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from datagen import hostile
from mmops.config.validate import ValidateConfig
from mmops.validate.files import check_file


# --------------------------------------------------------------------------- paths


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_path_escaping_the_dataset(dataset, kit, check, how):
    outside = dataset.parent / "outside.png"
    kit.write_png(outside, seed=99)
    if how == "dotdot":
        cell = "../outside.png"
    elif how == "absolute":
        cell = str(outside)
    else:
        os.symlink(outside, dataset / "images" / "link.png")
        cell = "images/link.png"
    kit.set_cell(dataset, "s004", "image", cell)
    kit.assert_fails(check(dataset), "path_inside_dataset", "s004", "image")


def test_symlink_and_dotdot_that_stay_inside_are_fine(dataset, kit, check):
    os.symlink(dataset / "images" / "s004.png", dataset / "images" / "alias.png")
    kit.set_cell(dataset, "s004", "image", "images/alias.png")
    kit.set_cell(dataset, "s005", "image", "audio/../images/s005.png")
    assert check(dataset).passed


def test_missing_file(dataset, kit, check):
    kit.set_cell(dataset, "s006", "audio", "audio/nope.wav")
    kit.assert_fails(check(dataset), "file_exists", "s006", "audio", "audio/nope.wav")


def test_directory_instead_of_file(dataset, kit, check):
    kit.set_cell(dataset, "s006", "image", "images")
    kit.assert_fails(check(dataset), "file_exists", "s006", "image")


# --------------------------------------------------------------------------- content type


def test_image_cell_pointing_at_a_wav(dataset, kit, check):
    kit.set_cell(dataset, "s003", "image", "audio/s003.wav")
    kit.assert_fails(check(dataset), "media_type_matches", "s003", "image", "WAV")


def test_wav_bytes_behind_a_png_name(dataset, kit, check):
    shutil.copy(dataset / "audio" / "s003.wav", dataset / "images" / "s003.png")
    kit.assert_fails(check(dataset), "media_type_matches", "s003", "image", "WAV")


def test_audio_cell_pointing_at_a_png(dataset, kit, check):
    kit.set_cell(dataset, "s003", "audio", "images/s003.png")
    kit.assert_fails(check(dataset), "media_type_matches", "s003", "audio", "PNG")


def test_unknown_content(dataset, kit, check):
    (dataset / "images" / "s003.png").write_bytes(b"hello, not an image")
    kit.assert_fails(check(dataset), "media_type_matches", "s003", "image")


def test_empty_media_file(dataset, kit, check):
    (dataset / "audio" / "s003.wav").write_bytes(b"")
    kit.assert_fails(check(dataset), "media_type_matches", "s003", "audio", "0 bytes")


def test_format_not_allowed(dataset, kit, check):
    Image.open(dataset / "images" / "s003.png").save(dataset / "images" / "s003.gif")
    kit.set_cell(dataset, "s003", "image", "images/s003.gif")
    kit.assert_fails(check(dataset), "media_type_matches", "s003", "GIF")
    assert check(dataset, image_formats=["PNG", "GIF"]).passed


# --------------------------------------------------------------------------- images


def test_truncated_png_does_not_decode(dataset, kit, check):
    path = dataset / "images" / "s009.png"
    kit.write_png(path, seed=9, size=(64, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header intact, pixel data cut
    kit.assert_fails(check(dataset), "image_decodes", "s009", "image")


def test_image_too_small(dataset, kit, check):
    kit.write_png(dataset / "images" / "s010.png", seed=10, size=(2, 2))
    kit.assert_fails(check(dataset), "image_size", "s010", "image", "2x2")


def test_image_too_large_is_not_decoded(dataset, kit, check):
    kit.write_png(dataset / "images" / "s010.png", seed=10, size=(80, 8))
    kit.assert_fails(check(dataset, image_max_side=64), "image_size", "s010", "80x8")


def test_image_mode_not_allowed(dataset, kit, check):
    Image.new("CMYK", (8, 8)).save(dataset / "images" / "s011.jpg")
    kit.set_cell(dataset, "s011", "image", "images/s011.jpg")
    kit.assert_fails(check(dataset), "image_mode", "s011", "image", "CMYK")


# --------------------------------------------------------------------------- audio


def test_garbage_after_a_wav_header_does_not_decode(dataset, kit, check):
    (dataset / "audio" / "s013.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVE" + b"\x00junk" * 20)
    kit.assert_fails(check(dataset), "audio_decodes", "s013", "audio")


def test_truncated_wav_does_not_decode_fully(dataset, kit, check):
    path = dataset / "audio" / "s013.wav"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    kit.assert_fails(check(dataset), "audio_decodes", "s013", "audio")


def test_audio_without_samples(dataset, kit, check):
    kit.write_wav(dataset / "audio" / "s014.wav", seed=0, samples=np.zeros(0, dtype=np.float32))
    kit.assert_fails(check(dataset), "audio_not_empty", "s014", "audio")


def test_audio_with_nan(dataset, kit, check):
    x = np.full(3200, 0.1, dtype=np.float32)
    x[100] = np.nan
    kit.write_wav(dataset / "audio" / "s015.wav", seed=0, samples=x, subtype="FLOAT")
    kit.assert_fails(check(dataset), "audio_finite", "s015", "audio", "NaN")


def test_audio_too_short(dataset, kit, check):
    kit.write_wav(dataset / "audio" / "s016.wav", seed=16, seconds=0.01)
    kit.assert_fails(check(dataset), "audio_duration", "s016", "audio", "0.010 s")


def test_audio_too_long(dataset, kit, check):
    kit.write_wav(dataset / "audio" / "s016.wav", seed=16, seconds=1.5)
    kit.assert_fails(check(dataset, audio_max_duration_s=1.0), "audio_duration", "s016")


def test_audio_sample_rate_out_of_bounds(dataset, kit, check):
    kit.write_wav(dataset / "audio" / "s017.wav", seed=17, sr=4000)
    kit.assert_fails(check(dataset), "audio_sample_rate", "s017", "audio", "4000 Hz")


HOSTILE = {  # file name: (bytes, column, rule, words in the message)
    "huge.png": (lambda: hostile.png_header(60000, 60000), "image", "image_size", "3600000000 pixels"),
    "wide.png": (lambda: hostile.png_header(40000, 8), "image", "image_size", "40000x8"),
    "odd-rate-long.wav": (lambda: hostile.wav(16001, 16001 * 61), "audio", "audio_duration", "61.000 s (from the header)"),
    "many-channels.wav": (lambda: hostile.wav(44100, 4410, channels=16), "audio", "audio_decodes", "16 channels"),
    "hi-rate.wav": (lambda: hostile.wav(192000, 19200, channels=16), "audio", "audio_sample_rate", "192000 Hz"),
    "many-channels.flac": (lambda: hostile.flac(192000, 40.0, 8), "audio", "audio_sample_rate", "192000 Hz"),
    "long.flac": (lambda: hostile.flac(48000, 40.0, 8), "audio", "audio_duration", "40.000 s (from the header)"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_files_are_refused_from_the_header(dataset, kit, check, monkeypatch, name):
    make, column, rule, needle = HOSTILE[name]
    path = dataset / ("images" if column == "image" else "audio") / name
    path.write_bytes(make())
    kit.set_cell(dataset, "s007", column, str(path.relative_to(dataset)))
    with monkeypatch.context() as m:  # this file alone: refused from its header, nothing decoded
        m.setattr(sf.SoundFile, "read", lambda *a, **k: pytest.fail("decoded"))
        m.setattr(Image.Image, "load", lambda *a, **k: pytest.fail("decoded"))
        started = time.perf_counter()
        result = check_file(path, name, column, ValidateConfig())
        assert time.perf_counter() - started < 1.0
    assert any(r == rule and needle in detail for r, detail in result.problems), result.problems
    kit.assert_fails(check(dataset), rule, "s007", column, needle)


def test_odd_rates_within_bounds_decode_fast(dataset, kit, check):
    """16,001 and 47,999 Hz are admitted (8-48 kHz); their decode is bounded all the same."""
    for sample, rate in (("s007", 16001), ("s008", 47999)):
        (dataset / "audio" / f"{sample}.wav").write_bytes(hostile.wav(rate, rate * 29))
    started = time.perf_counter()
    assert check(dataset).passed
    assert time.perf_counter() - started < 5.0


# --------------------------------------------------------------------------- leakage


def test_same_file_in_two_splits_is_leakage(dataset, kit, check):
    kit.set_cell(dataset, "s025", "audio", "audio/s001.wav")  # s025 is test, s001 is train
    kit.assert_fails(check(dataset), "split_leakage", "s001", "s025", "audio")


def test_same_content_under_two_names_is_leakage(dataset, kit, check):
    shutil.copy(dataset / "images" / "s002.png", dataset / "images" / "s015.png")  # train -> val
    report = check(dataset)
    kit.assert_fails(report, "split_leakage", "s002", "s015", "image")
    [leak] = [f for f in report.failures if f.rule == "split_leakage"]
    assert leak.n_failed == 2


def test_same_content_within_one_split_is_not_leakage(dataset, kit, check):
    shutil.copy(dataset / "images" / "s002.png", dataset / "images" / "s003.png")  # both train
    assert check(dataset).passed


def test_many_failures_list_the_first_n_ids(dataset, kit, check):
    for i in range(12):
        (dataset / "images" / f"s{i:03d}.png").unlink()
    report = check(dataset, max_ids=5)
    [f] = [f for f in report.failures if f.rule == "file_exists"]
    assert f.n_failed == 12 and f.sample_ids == ["s000", "s001", "s002", "s003", "s004"]
    assert "and 7 more" in f.message


@pytest.mark.parametrize("workers", [1, 4])
def test_workers_do_not_change_the_verdict(dataset, kit, check, workers):
    kit.set_cell(dataset, "s003", "image", "audio/s003.wav")
    (dataset / "audio" / "s020.wav").unlink()
    report = check(dataset, workers=workers)
    assert {(f.rule, tuple(f.sample_ids)) for f in report.failures} == {
        ("media_type_matches", ("s003",)), ("file_exists", ("s020",))}
