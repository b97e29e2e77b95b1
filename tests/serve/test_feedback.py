"""The served app's prediction log and /feedback, in-process on the trained model folder: request
ids, auth, unknown ids and classes, the log's files (no raw inputs), /metrics, a full log queue.
Requests carry media unlike the demo's: odd-size colour images, stereo 44.1 kHz audio."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from PIL import Image

from mmops.config.monitor import PredictionLogConfig
from mmops.monitor.log import read_log
from mmops.serve.app import create_app
from mmops.serve.reloader import LocalDirSource
from mmops.serve.settings import ServeSettings

TOKEN = "feedback-tests-" + "k3Y9xQ2mWv7LpZ4r"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _media(seed: int) -> tuple[bytes, bytes]:
    rng = np.random.default_rng(seed)
    img = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (41 + seed, 67, 3), dtype=np.uint8)).save(img, format="PNG")
    wav = io.BytesIO()
    sf.write(wav, rng.normal(0, 0.2, (22_050, 2)).astype(np.float32), 44_100, format="WAV")
    return img.getvalue(), wav.getvalue()


def _instances(n: int, texts: list[str]) -> tuple[list[dict], list[bytes]]:
    instances, media = [], []
    for i in range(n):
        image, audio = _media(i)
        inst = {"text": texts[i]}
        if i % 3 != 1:
            inst["image"] = base64.b64encode(image).decode()
            media.append(image)
        if i % 2 == 0:
            inst["audio"] = base64.b64encode(audio).decode()
            media.append(audio)
        instances.append(inst)
    return instances, media


def _settings(log_dir, **log) -> ServeSettings:
    config = PredictionLogConfig(dir=str(log_dir), flush_seconds=0.2, **log)
    return ServeSettings(poll_interval_s=0, token=TOKEN, prediction_log=config, feedback_ids=8)


@pytest.fixture(scope="module")
def served(served_model_dir, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("serve-log") / "predictions"
    app = create_app(_settings(log_dir), LocalDirSource(served_model_dir, name="tiny"))
    with TestClient(app) as client:
        yield client, app, log_dir


def test_predict_feedback_and_the_log(served):
    client, app, log_dir = served
    texts = [f"the secret phrase number {i} is swordfish" for i in range(5)]
    instances, media = _instances(5, texts)
    r = client.post("/predict", json={"instances": instances}, headers=AUTH)
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    ids = [p["request_id"] for p in predictions]
    assert len(set(ids)) == 5 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    classes = client.get("/metadata", headers=AUTH).json()["classes"]

    body = {"feedback": [{"request_id": ids[i], "label": classes[i % len(classes)]} for i in range(3)]}
    assert client.post("/feedback", json=body).status_code == 401  # authenticated like /predict
    assert client.post("/feedback", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = client.post("/feedback", json={"request_id": ids[0], "label": "platypus"}, headers=AUTH)
    assert r.status_code == 422 and "'platypus'" in r.json()["detail"]
    r = client.post("/feedback", json={"request_id": "0" * 32, "label": classes[0]}, headers=AUTH)
    assert r.status_code == 404 and "body.request_id" in r.json()["detail"]
    bad = {"feedback": [*body["feedback"], {"request_id": "f" * 32, "label": classes[0]}]}
    r = client.post("/feedback", json=bad, headers=AUTH)
    assert r.status_code == 404 and "feedback[3].request_id" in r.json()["detail"]  # all or nothing
    r = client.post("/feedback", json=body, headers=AUTH)
    assert r.status_code == 200 and r.json() == {"accepted": 3}

    assert app.state.serve["log"].flush(30)
    frame = read_log(log_dir)
    assert list(frame["request_id"]) == ids and set(frame["model_version"]) == {"local"}
    assert list(frame["label"]) == [p["label"] for p in predictions]
    assert list(frame["true_label"][:3]) == [classes[i % len(classes)] for i in range(3)]
    assert frame["true_label"][3:].isna().all()
    assert list(frame["image.width"].fillna(0)) == [67.0 if "image" in inst else 0 for inst in instances]
    assert list(frame["audio.sample_rate"].fillna(0)) == [44_100.0 if "audio" in inst else 0 for inst in instances]

    blobs = b"".join(p.read_bytes() for p in log_dir.iterdir() if p.is_file())  # every file the session wrote
    assert b"swordfish" not in blobs and not any(t.encode() in blobs for t in texts)
    for data in media:
        for needle in (data[-64:], data[len(data) // 2: len(data) // 2 + 64], base64.b64encode(data)[200:264]):
            assert needle not in blobs
    assert not {"text", "image_sha256", "audio_sha256"} & set(frame.columns)

    expected = (frame["true_label"][:3] == frame["label"][:3]).mean()
    (log_dir / "drift.json").write_text(json.dumps({
        "modalities": {"audio": {"score": 0.42, "drifted": True}, "image": {"score": 0.01, "drifted": False}},
        "prediction": {"score": 0.2, "drifted": False}, "live": None, "triggered": True, "reasons": ["audio"]}))
    text = client.get("/metrics", headers=AUTH).text
    assert _metric(text, "mmops_feedback_total") == 3
    assert _metric(text, "mmops_prediction_log_rows_total") == 5
    assert _metric(text, "mmops_prediction_log_dropped_total") == 0
    assert _metric(text, "mmops_live_accuracy") == pytest.approx(expected)
    assert _metric(text, 'mmops_drift_score{modality="audio"}') == 0.42
    assert _metric(text, 'mmops_drift_detected{modality="audio"}') == 1
    assert _metric(text, 'mmops_drift_detected{modality="prediction"}') == 0
    assert 'mmops_requests_total{endpoint="/feedback",method="POST",status="200"}' in text


def test_feedback_for_an_id_older_than_memory_is_looked_up_in_the_log(served):
    client, app, _ = served
    instances, _ = _instances(1, ["old one"])
    old = client.post("/predict", json={"instances": instances}, headers=AUTH).json()["predictions"][0]
    for _ in range(3):  # 12 newer ids push it out of the 8 remembered
        client.post("/predict", json={"instances": [{"text": "new"}] * 4}, headers=AUTH)
    assert old["request_id"] not in app.state.serve["recent"]
    assert app.state.serve["log"].flush(30)
    r = client.post("/feedback", json={"request_id": old["request_id"], "label": old["label"]}, headers=AUTH)
    assert r.status_code == 200 and r.json() == {"accepted": 1}


def test_a_full_log_queue_drops_rows_but_answers(served_model_dir, tmp_path):
    settings = _settings(tmp_path / "log", queue_mb=1e-4)  # no media row fits
    with TestClient(create_app(settings, LocalDirSource(served_model_dir))) as client:
        instances, _ = _instances(3, ["a", "b", "c"])
        r = client.post("/predict", json={"instances": instances}, headers=AUTH)
        assert r.status_code == 200 and len(r.json()["predictions"]) == 3
        assert _metric(client.get("/metrics", headers=AUTH).text, "mmops_prediction_log_dropped_total") == 3


def test_no_log_means_no_files_and_feedback_refused(served_model_dir, tmp_path):
    settings = _settings(tmp_path / "log", enabled=False)
    with TestClient(create_app(settings, LocalDirSource(served_model_dir))) as client:
        p = client.post("/predict", json={"instances": [{"text": "three"}]}, headers=AUTH).json()["predictions"][0]
        assert re.fullmatch(r"[0-9a-f]{32}", p["request_id"])
        r = client.post("/feedback", json={"request_id": p["request_id"], "label": p["label"]}, headers=AUTH)
        assert r.status_code == 409 and "--no-log" in r.json()["detail"]
        assert client.get("/metadata", headers=AUTH).json()["prediction_log"]["enabled"] is False
        assert "mmops_prediction_log_rows_total" not in client.get("/metrics", headers=AUTH).text
    assert not (tmp_path / "log").exists()


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")
