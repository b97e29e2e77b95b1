"""File checks on worker processes: the same report as in-process, the auto worker count, bounds kept."""

from __future__ import annotations

import functools
import operator
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from datagen import hostile
from datagen.unlike_demo import make_dataset
from pydantic import ValidationError

from mmops.config import validate as validate_config
from mmops.config.validate import AUTO_FILES_PER_WORKER, ValidateConfig
from mmops.validate import files as files_module
from mmops.validate import validate_dataset
from mmops.validate.files import check_file, check_jobs
from mmops.validate.parallel import ordered_map

SAME = {"failures", "rules", "notes", "n_rows", "n_files", "n_bytes", "data_hash", "rows_per_split",
        "rows_per_label", "modality_counts"}


def _rows_with(df: pd.DataFrame, column: str, suffix: str, split: str | None = None) -> list[int]:
    return [i for i, v in enumerate(df[column])
            if v and v.endswith(suffix) and (split is None or df["split"][i] == split)]


@pytest.fixture(scope="module")
def unlike(tmp_path_factory) -> tuple[Path, dict[str, set[str]]]:
    """The dataset unlike the demo (string labels; RGB PNG/JPEG of 64..320 px; 44.1 kHz stereo WAV,
    22 kHz FLAC and MP3; about 15 % of rows missing one modality), given a split column and broken
    on purpose. Returns its folder and {rule: the sample ids that must fail it}."""
    root = make_dataset(tmp_path_factory.mktemp("unlike") / "ds", n_per_class=30)
    df = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    df["split"] = [("train", "train", "train", "val", "test")[i % 5] for i in range(len(df))]
    sid = df["sample_id"].tolist()
    expect: dict[str, set[str]] = {}
    used: set[int] = set()

    def pick(column: str, suffix: str, split: str | None = None) -> int:
        i = next(i for i in _rows_with(df, column, suffix, split) if i not in used)
        used.add(i)
        return i

    i = pick("image", ".jpg")  # a JPEG cut in half
    data = (root / df["image"][i]).read_bytes()
    (root / df["image"][i]).write_bytes(data[: len(data) // 2])
    expect["image_decodes"] = {sid[i]}
    i = pick("audio", ".wav")  # a WAV header over garbage
    (root / df["audio"][i]).write_bytes(b"RIFF\x24\x00\x00\x00WAVE" + b"\x00junk" * 20)
    expect["audio_decodes"] = {sid[i]}
    i = pick("audio", ".flac")
    df.loc[i, "audio"] = "audio/nope.flac"
    expect["file_exists"] = {sid[i]}
    i, j = pick("image", ".png"), pick("audio", ".mp3")
    df.loc[i, "image"] = df["audio"][j]  # an MP3 in the image column
    expect["media_type_matches"] = {sid[i]}
    i = pick("image", ".png")  # a decode bomb: 60000 x 60000 px declared in a few hundred bytes
    (root / df["image"][i]).write_bytes(hostile.png_header(60000, 60000))
    expect["image_size"] = {sid[i]}
    i = pick("audio", ".wav")  # 61 s at 16,001 Hz: refused from the header
    (root / df["audio"][i]).write_bytes(hostile.wav(16001, 16001 * 61))
    expect["audio_duration"] = {sid[i]}
    i = pick("image", "g")
    df.loc[i, "image"] = "../outside.png"
    expect["path_inside_dataset"] = {sid[i]}
    i, j = pick("image", "g", "train"), pick("image", "g", "test")  # the same picture in train and test
    shutil.copy(root / df["image"][i], root / df["image"][j])
    expect["split_leakage"] = {sid[i], sid[j]}
    i, j = pick("audio", ".mp3", "train"), pick("audio", "", "train")  # one file named by two rows, one split
    df.loc[j, "audio"] = df["audio"][i]
    df.to_csv(root / "manifest.csv", index=False)
    return root, expect


def _same(report) -> dict:
    return report.model_dump(include=SAME)


def test_process_pool_report_is_the_serial_report(unlike, monkeypatch):
    root, expect = unlike
    serial = validate_dataset(root, None, ValidateConfig(workers=1))
    assert serial.file_workers == 1 and serial.files_in_workers == 0
    got = {f.rule: set(f.sample_ids) for f in serial.failures if f.rule in expect}
    assert got == expect and {f.rule for f in serial.failures} == set(expect), serial.summary()
    assert all(f.column and f.rule in f.message for f in serial.failures)
    assert serial.n_files > 150 and {"text", "image", "audio"} <= set(serial.modality_counts)

    # every file checked in a worker process (this one does not help), so the pool path is compared
    monkeypatch.setattr(files_module, "check_jobs", functools.partial(check_jobs, caller_helps=False))
    pooled = validate_dataset(root, None, ValidateConfig(workers=2))
    assert pooled.file_workers == 2 and pooled.files_in_workers == pooled.n_files
    assert _same(pooled) == _same(serial)


def test_caller_and_workers_together_give_the_serial_report(unlike):
    root, _ = unlike
    serial = validate_dataset(root, None, ValidateConfig(workers=1))
    helped = validate_dataset(root, None, ValidateConfig(workers=3))
    assert helped.file_workers == 3
    assert _same(helped) == _same(serial)


@pytest.mark.parametrize(("cpus", "load", "files", "expected"), [
    (2, 0.0, 0, 1),
    (2, 0.0, AUTO_FILES_PER_WORKER - 1, 1),  # too few files to pay for a worker's start-up: in process
    (2, 0.0, AUTO_FILES_PER_WORKER, 2),
    (2, 0.0, 100 * AUTO_FILES_PER_WORKER, 2),  # never more than the usable CPUs
    (8, 0.0, 3 * AUTO_FILES_PER_WORKER, 4),  # one more per AUTO_FILES_PER_WORKER files
    (8, 0.0, 100 * AUTO_FILES_PER_WORKER, 8),
    (1, 0.0, 100 * AUTO_FILES_PER_WORKER, 1),
    (2, 1.0, 100 * AUTO_FILES_PER_WORKER, 2),  # this process busy, one core idle: one worker
    (2, 1.7, 100 * AUTO_FILES_PER_WORKER, 1),  # both cores busy: a worker would only add its start-up
    (2, 9.0, 100 * AUTO_FILES_PER_WORKER, 1),
    (8, 5.0, 100 * AUTO_FILES_PER_WORKER, 4),  # 3 cores idle
])
def test_auto_worker_count(monkeypatch, cpus, load, files, expected):
    monkeypatch.setattr(validate_config, "usable_cpus", lambda: cpus)
    monkeypatch.setattr(validate_config, "load_average", lambda: load)
    assert ValidateConfig().workers == "auto"
    assert ValidateConfig().resolved_workers(files) == expected
    assert ValidateConfig(workers=3).resolved_workers(files) == 3  # an integer is taken as given


def test_workers_knob_accepts_auto_or_a_count():
    assert ValidateConfig.model_validate({"workers": "auto"}).workers == "auto"
    assert ValidateConfig.model_validate({"workers": 6}).workers == 6
    for bad in ("many", 0, 257, -1):
        with pytest.raises(ValidationError):
            ValidateConfig(workers=bad)


def test_a_small_dataset_is_checked_in_process_by_default(dataset, check):
    report = check(dataset)
    assert 0 < report.n_files < AUTO_FILES_PER_WORKER
    assert report.file_workers == 1 and report.files_in_workers == 0


def test_decode_bombs_are_refused_in_worker_processes(tmp_path):
    bombs = {  # name: (bytes, column, rule, words in the message)
        "huge.png": (hostile.png_header(60000, 60000), "image", "image_size", "3600000000 pixels"),
        "wide.png": (hostile.png_header(40000, 8), "image", "image_size", "40000x8"),
        "odd-rate-long.wav": (hostile.wav(16001, 16001 * 61), "audio", "audio_duration", "(from the header)"),
        "many-channels.wav": (hostile.wav(44100, 4410, channels=16), "audio", "audio_decodes", "16 channels"),
        "long.flac": (hostile.flac(48000, 40.0, 8), "audio", "audio_duration", "40.000 s (from the header)"),
        # a bound that only the caller's config sets (below): the workers must check with that config
        "stereo.wav": (None, "audio", "audio_sample_rate", "44100 Hz is outside 8000..32000 Hz"),
    }
    jobs = []
    for name, (data, column, _, _) in bombs.items():
        path = tmp_path / name
        if data is None:
            sf.write(path, np.zeros((4410, 2), np.float32), 44100, subtype="PCM_16")
        else:
            path.write_bytes(data)
        jobs.append((str(path), name, column))
    cfg = ValidateConfig(audio_max_sample_rate=32_000)
    results, in_workers, note = check_jobs(jobs, cfg, workers=2, caller_helps=False)
    assert in_workers == len(jobs) and note is None
    for (name, (_, _, rule, needle)), res in zip(bombs.items(), results):
        assert any(r == rule and needle in detail for r, detail in res.problems), (name, res.problems)
    assert results == [check_file(Path(p), cell, col, cfg) for p, cell, col in jobs]


# --------------------------------------------------------------------------- the pool itself


def test_ordered_map_keeps_batch_order():
    batches = [[i, 1000] for i in range(40)]
    out = ordered_map(sum, batches, workers=3, caller_helps=False)
    assert out.results == [i + 1000 for i in range(40)] and all(out.in_worker) and out.note is None
    helped = ordered_map(sum, batches, workers=2)
    assert helped.results == out.results


def test_one_worker_runs_in_this_process():
    out = ordered_map(os._exit, [1, 2], workers=1, local=operator.neg)  # os._exit would end a worker
    assert out.results == [-1, -2] and not any(out.in_worker)


def test_a_dead_worker_s_batches_are_checked_here():
    out = ordered_map(os._exit, [3, 4, 5], workers=2, local=operator.neg, caller_helps=False)
    assert out.results == [-3, -4, -5] and not any(out.in_worker)
    assert "BrokenProcessPool" in out.note and "3 of 3 batches" in out.note


def test_an_error_in_a_worker_is_raised_here():
    with pytest.raises(TypeError):
        ordered_map(int, [["not a number"], ["x"]], workers=2, caller_helps=False)


def _sums_from_a_daemon(batches):
    return ordered_map(sum, batches, workers=2, caller_helps=False)


def test_a_process_that_may_not_have_children_checks_alone():
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:  # pool workers are daemonic
        out = pool.apply(_sums_from_a_daemon, ([[1, 2], [3, 4]],))
    assert out.results == [3, 7] and not any(out.in_worker)
    assert "could not start" in out.note
