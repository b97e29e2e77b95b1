"""The HTTP app in-process (TestClient) on a local model folder: contract, checks, auth, metrics."""

from __future__ import annotations

import io
import json
import wave

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mmops.inference.model_dir import load_model_dir
from mmops.inference.predict import predict_frame
from mmops.serve.app import create_app
from mmops.serve.reloader import LocalDirSource
from mmops.serve.settings import ServeSettings


@pytest.fixture(scope="module")
def loaded(served_model_dir):
    return load_model_dir(served_model_dir)


@pytest.fixture(scope="module")
def client(served_model_dir):
    settings = ServeSettings(poll_interval_s=0, max_instances=16, max_body_bytes=400_000, token="")
    with TestClient(create_app(settings, LocalDirSource(served_model_dir, name="tiny"))) as c:
        yield c


def _assert_matches(predictions, expected, classes):
    assert [p["label"] for p in predictions] == list(expected["label"])
    got = np.array([[p["probabilities"][c] for c in classes] for p in predictions])
    np.testing.assert_allclose(got, expected[classes].to_numpy(), atol=1e-5)


def test_json_predictions_equal_predict_frame(client, loaded, small_dataset, serve_io):
    rows = serve_io.with_gaps(serve_io.rows(small_dataset, 6))
    r = client.post("/predict", json={"instances": serve_io.instances(rows)})
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert len(predictions) == 6 and {p["model_version"] for p in predictions} == {"local"}
    _assert_matches(predictions, predict_frame(loaded, rows[["text", "image", "audio"]]), loaded.classes)
    for p in predictions:
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-4


def test_multipart_and_data_uri_and_nulls(client, loaded, small_dataset, serve_io):
    rows = serve_io.rows(small_dataset, 1)
    row = rows.iloc[0]
    with open(row["image"], "rb") as img, open(row["audio"], "rb") as aud:
        r = client.post("/predict", data={"text": row["text"]}, files={"image": img, "audio": aud})
    assert r.status_code == 200, r.text
    expected = predict_frame(loaded, rows[["text", "image", "audio"]])
    _assert_matches(r.json()["predictions"], expected, loaded.classes)

    inst = {"text": row["text"], "image": "data:image/png;base64," + serve_io.b64(row["image"]),
            "audio": None}
    r = client.post("/predict", json={"instances": [inst]})
    assert r.status_code == 200, r.text
    _assert_matches(r.json()["predictions"], predict_frame(loaded, rows[["text", "image"]].assign(audio=None)),
                    loaded.classes)


def _wav_bytes(seconds: float, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return buf.getvalue()


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"instances": [{"text": "one"}, {"image": "***not base64***"}]}, 422, "instances[1].image: not valid base64"),
        ({"instances": [{"image": "aGVsbG8gd29ybGQ="}]}, 422, "instances[0].image: not a decodable image"),
        ({"instances": [{"audio": "aGVsbG8gd29ybGQ="}]}, 422, "instances[0].audio: not decodable audio"),
        ({"instances": [{"text": 7}]}, 422, "instances[0].text: expected a string or null, got number"),
        ({"instances": [{"text": "a"}, {"image": ["x"]}]}, 422, "instances[1].image: expected a base64 string"),
        ({"instances": [{"text": "a", "picture": "x"}]}, 422, "instances[0].picture: unknown field"),
        ({"instances": ["just text"]}, 422, "instances[0]: must be an object, got string"),
        ({"instances": [{}]}, 422, "instances[0]: no input"),
        ({"instances": {"text": "a"}}, 422, "'instances' must be an array, got object"),
        ({"instances": []}, 422, "'instances' is empty"),
        ({"inputs": []}, 422, "unknown top-level field 'inputs'"),
        ([1, 2], 422, "body must be a JSON object"),
        ({"instances": [{"text": "a"}] * 17}, 413, "17 instances in one request; the limit is 16"),
    ],
)
def test_bad_json_input_is_a_4xx_naming_the_field(client, body, status, message):
    r = client.post("/predict", json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    assert "Traceback" not in r.text


def test_other_bad_requests(client):
    import base64

    r = client.post("/predict", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["detail"] == "body is not valid JSON"
    r = client.post("/predict", content=b"text=hi", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = client.post("/predict", content=b"x" * 400_001, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "limit is 400000" in r.json()["detail"]
    long_audio = base64.b64encode(_wav_bytes(61, rate=1000)).decode()  # 61 s > the 60 s limit, small body
    r = client.post("/predict", json={"instances": [{"audio": long_audio}]})
    assert r.status_code == 422 and "instances[0].audio: audio is 61.0 s, above the 60 s limit" in r.text
    r = client.post("/predict", json={"instances": [{"audio": base64.b64encode(_wav_bytes(0)).decode()}]})
    assert r.status_code == 422 and "instances[0].audio" in r.text
    r = client.post("/predict", files={"image": ("x.png", b"not a png")})
    assert r.status_code == 422 and r.json()["detail"] == "instances[0].image: not a decodable image"
    r = client.post("/predict", data={"text": "hi", "extra": "x"})
    assert r.status_code == 422 and "instances[0].extra" in r.json()["detail"]
    assert client.post("/predict", json={"instances": [{"text": "seven"}]}).status_code == 200


def test_metadata_health_and_metrics(client, loaded):
    health = client.get("/health").json()
    assert health == {"status": "ok", "model": "tiny", "version": "local", "desired_version": "local", "in_sync": True}
    meta = client.get("/metadata").json()
    assert meta["classes"] == loaded.classes and meta["modalities"] == ["text", "image", "audio"]
    assert meta["name"] == "tiny" and meta["version"] == "local" and meta["auth"] == "none"
    assert set(meta["input"]["json"]["instances"][0]) == {"text", "image", "audio"}
    assert meta["limits"]["max_body_bytes"] == 400_000

    client.post("/predict", json={"instances": [{"text": "an even number"}]})
    client.post("/predict", json={"instances": [{"text": 1}]})
    text = client.get("/metrics").text
    assert 'mmops_requests_total{endpoint="/predict",method="POST",status="200"}' in text
    assert 'mmops_requests_total{endpoint="/predict",method="POST",status="422"}' in text
    assert "mmops_request_latency_seconds_bucket" in text
    assert "mmops_batch_size_count" in text
    assert 'mmops_model_info{alias="",model="tiny",version="local"} 1.0' in text


def test_bearer_token(served_model_dir, monkeypatch):
    monkeypatch.setenv("MMOPS_SERVE_TOKEN", "s3cret")
    with TestClient(create_app(ServeSettings(poll_interval_s=0), LocalDirSource(served_model_dir))) as c:
        body = {"instances": [{"text": "odd"}]}
        assert c.get("/health").status_code == 200  # probes need no token
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            r = c.post("/predict", json=body, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert c.get("/metadata", headers=headers).status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        assert c.post("/predict", json=body, headers=ok).status_code == 200
        assert c.get("/metadata", headers=ok).json()["auth"] == "bearer"
        assert c.get("/metrics", headers=ok).status_code == 200


def test_internal_errors_hide_details(served_model_dir, monkeypatch):
    import mmops.serve.app as app_module

    with TestClient(create_app(ServeSettings(poll_interval_s=0), LocalDirSource(served_model_dir)),
                    raise_server_exceptions=False) as c:
        def boom(served, rows):
            raise RuntimeError("secret internals /etc/passwd")

        monkeypatch.setattr(app_module, "predict_rows", boom)
        r = c.post("/predict", json={"instances": [{"text": "odd"}]})
        assert r.status_code == 500
        assert r.json() == {"detail": "internal server error"}
        assert "secret" not in r.text


def test_settings_from_env(monkeypatch):
    monkeypatch.setenv("MMOPS_SERVE_MAX_BODY_BYTES", "1234")
    monkeypatch.setenv("MMOPS_SERVE_REQUEST_TIMEOUT_S", "2.5")
    s = ServeSettings.from_env(max_wait_ms=2, alias=None)
    assert s.max_body_bytes == 1234 and s.request_timeout_s == 2.5 and s.max_wait_ms == 2 and s.alias == "champion"
    assert "token" not in repr(ServeSettings(token="x"))


def test_json_is_parsed_once_per_request(client):
    """A request body with many instances is answered in order, one prediction per instance."""
    texts = ["even", "odd", "prime", "greater than 5"]
    r = client.post("/predict", content=json.dumps({"instances": [{"text": t} for t in texts]}),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 4


def test_long_texts_and_deep_json_are_refused(client):
    r = client.post("/predict", json={"instances": [{"text": "a@" * 50_001}]})
    assert r.status_code == 422 and r.json()["detail"] == (
        "instances[0].text: 100,002 characters, above the 100,000-character limit")
    deep = b'{"instances":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = client.post("/predict", content=deep, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["detail"] == "body is nested too deeply"


def test_concurrency_limit_and_timeout(served_model_dir, monkeypatch):
    import threading
    import time

    import mmops.serve.app as app_module

    release = threading.Event()
    original = app_module.predict_rows

    def slow(served, rows):
        release.wait(10)
        return original(served, rows)

    monkeypatch.setattr(app_module, "predict_rows", slow)
    settings = ServeSettings(poll_interval_s=0, token="", max_concurrent_requests=1, request_timeout_s=0.5)
    with TestClient(create_app(settings, LocalDirSource(served_model_dir))) as c:
        body = {"instances": [{"text": "odd"}]}
        results = {}
        first = threading.Thread(target=lambda: results.update(first=c.post("/predict", json=body)))
        first.start()
        time.sleep(0.2)  # the first request is in the model call
        started = time.perf_counter()
        health = c.get("/health")
        assert health.status_code == 200 and time.perf_counter() - started < 0.1  # the loop is free
        r = c.post("/predict", json=body)
        assert r.status_code == 503 and "limit 1" in r.json()["detail"]
        first.join(5)
        assert results["first"].status_code == 504 and "within 0.5 s" in results["first"].json()["detail"]
        release.set()
        assert c.post("/predict", json=body).status_code == 200
