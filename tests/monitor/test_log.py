"""The prediction log: rotation and its bound, a full queue, the feedback join, live metrics, what
is (not) stored. Generated data unlike the demo: string labels, odd-size colour images, stereo
44.1 kHz audio, missing modalities."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score

from mmops.config.monitor import PredictionLogConfig
from mmops.monitor.log import (
    FEEDBACK,
    PREDICTIONS,
    LogStatus,
    PredictionLog,
    live_metrics,
    logged_request_ids,
    new_request_id,
    read_log,
    record_manifest,
)
from mmops.monitor.summary import SUMMARY_COLUMNS

CLASSES = ["cat", "dog", "bird"]


def _png(rng, h, w) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _stereo(rng, seconds=0.3, rate=44_100) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, rng.normal(0, 0.2, (int(seconds * rate), 2)).astype(np.float32), rate, format="WAV")
    return buf.getvalue()


def _traffic(n: int, seed: int = 0, version: str = "7", classes=CLASSES):
    """n rows with modalities missing in turn, and answers with string labels."""
    rng = np.random.default_rng(seed)
    rows, answers = [], []
    for i in range(n):
        rows.append({"text": f"sample {i} " * (i % 5) if i % 4 else "",
                     "image": _png(rng, 11 + i % 7, 23 + i % 5) if i % 3 else None,
                     "audio": _stereo(rng) if i % 2 else None})
        p = rng.dirichlet(np.ones(len(classes)))
        answers.append({"label": classes[int(p.argmax())], "probabilities": dict(zip(classes, p.tolist())),
                        "model_version": version})
    return [new_request_id() for _ in range(n)], rows, answers


def _config(tmp_path, **kw) -> PredictionLogConfig:
    return PredictionLogConfig(dir=str(tmp_path / "log"), flush_seconds=60, **kw)


def _parquet(tmp_path, kind):
    return sorted((tmp_path / "log").glob(f"{kind}-*.parquet"))


def test_rows_hold_answers_and_summaries_in_time_order(tmp_path):
    ids, rows, answers = _traffic(9)
    with PredictionLog(_config(tmp_path), "clf") as plog:
        assert plog.record(ids[:4], rows[:4], answers[:4]) == 4
        assert plog.record(ids[4:], rows[4:], answers[4:]) == 5
    frame = read_log(tmp_path / "log")
    assert list(frame.columns) == ["request_id", "time", "model_name", "model_version", "label",
                                   *[f"p.{c}" for c in CLASSES], *SUMMARY_COLUMNS, "true_label"]
    assert list(frame["request_id"]) == ids and frame["time"].is_monotonic_increasing
    assert str(frame["time"].dt.tz) == "UTC" and set(frame["model_name"]) == {"clf"}
    assert list(frame["label"]) == [a["label"] for a in answers]
    np.testing.assert_allclose(frame[[f"p.{c}" for c in CLASSES]].to_numpy(),
                               [[a["probabilities"][c] for c in CLASSES] for a in answers])
    assert list(frame["image.present"]) == [1.0 if r["image"] else 0.0 for r in rows]
    assert list(frame["audio.sample_rate"].fillna(0)) == [44_100.0 if r["audio"] else 0 for r in rows]
    assert frame["true_label"].isna().all()


def test_files_rotate_and_the_oldest_go(tmp_path):
    config = _config(tmp_path, max_rows_per_file=4, max_files=3)
    ids, rows, answers = _traffic(23, seed=1)
    with PredictionLog(config, "clf") as plog:
        for start in range(0, 23, 3):  # several flushes: the open file is rewritten, then rotated
            plog.record(ids[start:start + 3], rows[start:start + 3], answers[start:start + 3])
            assert plog.flush(30)
            files = _parquet(tmp_path, PREDICTIONS)
            assert len(files) <= 3
            assert all(pq.read_metadata(f).num_rows <= 4 for f in files)
    frame = read_log(tmp_path / "log")
    kept = sum(pq.read_metadata(f).num_rows for f in _parquet(tmp_path, PREDICTIONS))
    assert len(frame) == kept == 23 - 3 * 4  # 23 rows in files of 4: 6 files, the 3 newest kept (4 + 4 + 3)
    assert list(frame["request_id"]) == ids[-kept:]
    assert not list((tmp_path / "log").glob(".*"))  # no temp file left behind


def test_a_full_queue_drops_and_counts_without_blocking(tmp_path):
    ids, rows, answers = _traffic(10, seed=2)
    plog = PredictionLog(_config(tmp_path, queue_rows=2), "clf")
    try:
        assert plog.record(ids[:1], rows[:1], answers[:1]) == 1 and plog.flush(60)
        os.kill(plog.writer_pid, signal.SIGSTOP)  # a writer that cannot keep up
        try:
            started = time.monotonic()
            assert plog.record(ids[1:], rows[1:], answers[1:]) == 2  # room for 2; the rest dropped at once
            assert not plog.feedback(ids[0], "cat")
            assert time.monotonic() - started < 5
            assert plog.dropped == 8
        finally:
            os.kill(plog.writer_pid, signal.SIGCONT)
    finally:
        plog.close()
    assert list(read_log(tmp_path / "log")["request_id"]) == ids[:3]
    assert plog.stats() == {"rows": 3, "feedback": 0, "dropped": 8}


def test_a_killed_writer_never_blocks_serving(tmp_path):
    ids, rows, answers = _traffic(6, seed=4)
    plog = PredictionLog(_config(tmp_path, queue_rows=2), "clf")
    os.kill(plog.writer_pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while plog._process.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    assert plog.record(ids, rows, answers) == 2 and plog.dropped == 4  # what fits waits; the rest is counted
    assert not plog.flush(30)  # a dead writer: False at once, not after the timeout
    plog.close()
    assert time.monotonic() - started < 5


def test_the_writer_is_a_low_priority_process_that_outlives_a_killed_server(tmp_path):
    """Summaries and files never run on the server's GIL; if the server dies, queued rows still land."""
    script = f"""
import os, signal, sys, time
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_log import _config, _traffic
from pathlib import Path
from mmops.monitor.log import PredictionLog
plog = PredictionLog(_config(Path({str(tmp_path)!r})), "clf")
ids, rows, answers = _traffic(5, seed=9)
assert plog.record(ids, rows, answers) == 5
time.sleep(2)  # the queue's feeder thread has handed the rows to the writer (microseconds)...
print(plog.writer_pid, os.getpid(), os.getpriority(os.PRIO_PROCESS, plog.writer_pid), *ids, flush=True)
os.kill(plog.writer_pid, signal.SIGTERM)  # as a service manager stops the whole group
os._exit(0)  # ...which has not written them yet (flush_seconds=60): no close, no flush, as if killed
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    writer, server, nice, *ids = done.stdout.split()
    assert writer != server and nice == "19"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{writer}").exists():
        time.sleep(0.2)
    assert not Path(f"/proc/{writer}").exists()  # it noticed the server is gone and stopped
    assert list(read_log(tmp_path / "log")["request_id"]) == ids  # after writing what was queued


def test_media_bytes_waiting_are_bounded_too(tmp_path):
    ids, rows, answers = _traffic(6, seed=3)
    with PredictionLog(_config(tmp_path, queue_mb=1e-4), "clf") as plog:  # ~100 bytes: no image fits
        queued = plog.record(ids, rows, answers)
    assert queued == 1 and plog.dropped == 5  # row 0 has no media; row 1's audio is too big, the rest with it


def test_feedback_join_latest_wins_and_live_metrics(tmp_path):
    ids, rows, answers = _traffic(30, seed=4)
    truth = {rid: CLASSES[(i * 7) % 3] for i, rid in enumerate(ids[:20])}
    with PredictionLog(_config(tmp_path, max_rows_per_file=8), "clf") as plog:
        plog.record(ids, rows, answers)
        assert plog.feedback(ids[0], "bird")  # corrected below: the later label wins
        for rid, label in truth.items():
            assert plog.feedback(rid, label)
    frame = read_log(tmp_path / "log")
    assert dict(zip(frame["request_id"][:20], frame["true_label"][:20])) == truth
    assert frame["true_label"][20:].isna().all()
    got = live_metrics(frame)
    labelled = frame.head(20)
    assert got == {"n": 20,
                   "accuracy": pytest.approx(accuracy_score(labelled["true_label"], labelled["label"])),
                   "macro_f1": pytest.approx(f1_score(labelled["true_label"], labelled["label"], average="macro"))}
    assert live_metrics(read_log(tmp_path / "log", last=10)) is None  # the last 10 have no feedback
    assert len(_parquet(tmp_path, FEEDBACK)) == 3  # 21 labels, rotated like predictions: 8 + 8 + 5


def test_read_log_windows_and_versions(tmp_path):
    a = _traffic(5, seed=5, version="1")
    b = _traffic(4, seed=6, version="2", classes=["cat", "dog"])  # another model, other classes
    with PredictionLog(_config(tmp_path), "clf") as plog:
        plog.record(*a)
        plog.flush(30)
        middle = datetime.now(timezone.utc)
        plog.record(*b)
    frame = read_log(tmp_path / "log")
    assert list(frame["request_id"]) == a[0] + b[0]
    assert frame.loc[frame["model_version"] == "2", "p.bird"].isna().all()  # columns unioned
    assert list(read_log(tmp_path / "log", model_version="2")["request_id"]) == b[0]
    assert read_log(tmp_path / "log", model_version="2", model_name="another-model").empty
    assert list(read_log(tmp_path / "log", since=middle)["request_id"]) == b[0]
    naive = middle.replace(tzinfo=None)  # naive times are UTC
    assert list(read_log(tmp_path / "log", until=naive)["request_id"]) == a[0]
    assert list(read_log(tmp_path / "log", last=3)["request_id"]) == b[0][-3:]
    assert read_log(tmp_path / "log", since=middle + timedelta(days=1)).empty
    assert len(_parquet(tmp_path, PREDICTIONS)) == 2  # the class change started a new file
    assert logged_request_ids(tmp_path / "log", [a[0][1], "f" * 32]) == {a[0][1]}


def test_empty_or_missing_log_reads_as_empty(tmp_path):
    frame = read_log(tmp_path / "nothing")
    assert frame.empty and {"request_id", "time", "label", "true_label", *SUMMARY_COLUMNS} <= set(frame.columns)
    assert live_metrics(frame) is None


def test_no_raw_inputs_by_default_only_digests_when_enabled(tmp_path):
    ids, rows, answers = _traffic(6, seed=7)
    secret = "my card is 4111 1111 1111 1111, call me"
    rows[1]["text"] = secret
    with PredictionLog(_config(tmp_path), "clf") as plog:
        plog.record(ids, rows, answers)
        plog.feedback(ids[1], "dog")
    blobs = b"".join(p.read_bytes() for p in (tmp_path / "log").iterdir())
    _assert_no_raw(blobs, [secret], [r[m] for r in rows for m in ("image", "audio") if r[m]])
    assert not set(read_log(tmp_path / "log").columns) & {"text", "image_sha256", "audio_sha256"}

    with PredictionLog(_config(tmp_path / "raw", raw_inputs=True), "clf") as plog:
        plog.record(ids, rows, answers)
    frame = read_log(tmp_path / "raw" / "log")
    assert frame.loc[1, "text"] == secret
    digests = [hashlib.sha256(r["image"]).hexdigest() if r["image"] else None for r in rows]
    assert [x if isinstance(x, str) else None for x in frame["image_sha256"]] == digests
    assert list(frame["audio_sha256"].isna()) == [r["audio"] is None for r in rows]


def _assert_no_raw(blobs: bytes, texts: list[str], media: list[bytes]) -> None:
    """None of the texts, media or their base64 appears in the bytes written."""
    for text in texts:
        assert text.encode() not in blobs
    for data in media:
        for needle in (data[-64:], data[len(data) // 2:len(data) // 2 + 64], base64.b64encode(data)[100:164]):
            assert needle not in blobs


def test_batch_inference_rows_from_a_manifest(tmp_path):
    rng = np.random.default_rng(8)
    data = tmp_path / "data"
    (data / "media").mkdir(parents=True)
    (data / "media" / "a.png").write_bytes(_png(rng, 13, 31))
    (data / "media" / "b.wav").write_bytes(_stereo(rng))
    manifest = pd.DataFrame({"sample_id": ["s1", "s2"], "label": ["cat", "dog"], "text": ["hello there", ""],
                             "image": ["media/a.png", ""], "audio": ["", "media/b.wav"]})
    manifest.to_csv(data / "manifest.csv", index=False)
    predictions = pd.DataFrame({"sample_id": ["s1", "s2"], "label": ["dog", "dog"],
                                "prob_cat": [0.2, 0.1], "prob_dog": [0.8, 0.9]})
    with PredictionLog(_config(tmp_path, queue_rows=1), "clf") as plog:  # waits for room: nothing dropped
        ids = record_manifest(plog, data, predictions, "local")
    frame = read_log(tmp_path / "log")
    assert list(frame["request_id"]) == ids and plog.dropped == 0
    assert list(frame["p.dog"]) == [0.8, 0.9] and list(frame["model_version"]) == ["local", "local"]
    assert list(frame["image.width"].fillna(0)) == [31.0, 0] and list(frame["audio.present"]) == [0.0, 1.0]
    assert list(frame["text.words"].fillna(0)) == [2.0, 0]


def test_status_reads_live_metrics_and_the_drift_report(tmp_path):
    ids, rows, answers = _traffic(4, seed=9)
    with PredictionLog(_config(tmp_path), "clf") as plog:
        plog.record(ids, rows, answers)
        plog.feedback(ids[0], answers[0]["label"])
    other = _traffic(2, seed=11)  # another model, same version number, sharing the folder
    with PredictionLog(_config(tmp_path), "other-model") as plog:
        plog.record(*other)
        plog.feedback(other[0][0], "platypus")
    status = LogStatus(tmp_path / "log", "clf", min_interval_s=0)
    status.refresh("7", 1)
    assert status.live == {"n": 1, "accuracy": 1.0, "macro_f1": 1.0} and status.drift is None
    status.refresh("8", 1)  # another version has no feedback
    assert status.live is None
    report = {"modalities": {"audio": {"score": 0.4, "drifted": True}}, "prediction": {"score": 0.1, "drifted": False}}
    (tmp_path / "log" / "drift.json").write_text(json.dumps(report))
    status.refresh("8", 1)
    assert status.drift == report


def test_an_s3_log_rotates_joins_and_reads_the_drift_report(tmp_path, monkeypatch):
    from s3_server import running_s3

    with running_s3(tmp_path / "s3", buckets=("monitoring",)) as s3:
        for key, value in {**s3.env, "AWS_ENDPOINT_URL": s3.endpoint}.items():
            monkeypatch.setenv(key, value)
        config = PredictionLogConfig(dir="s3://monitoring/prod/log", max_rows_per_file=3, max_files=2)
        ids, rows, answers = _traffic(8, seed=10)
        with PredictionLog(config, "clf") as plog:
            plog.record(ids, rows, answers)
            plog.feedback(ids[-1], "dog")
        frame = read_log(config.dir)
        assert list(frame["request_id"]) == ids[-5:]  # files of 3, the newest 2 kept: 3 + 2 rows
        assert frame["true_label"].tolist()[-1] == "dog" and frame["true_label"][:-1].isna().all()
        keys = s3.keys("monitoring", "prod/log/")
        assert sum(k.rsplit("/", 1)[-1].startswith("predictions-") for k in keys) == 2
        s3.client().put_object(Bucket="monitoring", Key="prod/log/drift.json",
                               Body=json.dumps({"modalities": {"image": {"score": 0.3, "drifted": True}}}).encode())
        status = LogStatus(config.dir, "clf", min_interval_s=0)
        status.refresh("7", 0)
        assert status.drift["modalities"]["image"]["drifted"] is True
        assert status.live == {"n": 1, "accuracy": float(answers[-1]["label"] == "dog"),
                               "macro_f1": pytest.approx(f1_score(["dog"], [answers[-1]["label"]], average="macro"))}
