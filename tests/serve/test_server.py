"""End to end: a champion in a temp MLflow store, served by a real `mmops serve` process.

Also checks that MLflow's own server (`mlflow models serve`) answers `/invocations` with the
registered pyfunc. All traffic stays on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import ssl
import sys
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from mmops.catalog import VALIDATION_JSON, Catalog
from mmops.inference.predict import load_model_uri, predict_frame
from servers import BIN, free_port, running, self_signed_cert

pytestmark = pytest.mark.slow
NAME = "mmops-serve-e2e"
TOKEN = secrets.token_urlsafe(32)
BODY_CAP = 600_000
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _register(params, data_dir, reports_dir) -> str:
    """Register the trained model as a new version and make it the champion; return the version."""
    from mmops import stages

    reports_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(Catalog.from_paths(params.paths).validation_json, reports_dir / VALIDATION_JSON)
    p = params.model_copy(update={"paths": params.paths.model_copy(update={"reports": reports_dir})})
    result = stages.register(p, Catalog.from_paths(p.paths, data_dir))
    if not result["promoted"]:  # the gate is not under test here
        MlflowClient().set_registered_model_alias(NAME, "champion", result["version"])
    return result["version"]


@pytest.fixture(scope="module")
def registry(prepared, small_dataset, tmp_path_factory):
    from mmops import stages

    root = tmp_path_factory.mktemp("serve-e2e")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    paths = prepared.paths.model_copy(update={"model": root / "model", "metrics": root / "metrics"})
    params = prepared.model_copy(update={
        "paths": paths,
        "train": prepared.train.model_copy(update={"epochs": 3}),
        "registry": prepared.registry.model_copy(update={"model_name": NAME}),
        "quantize": prepared.quantize.model_copy(update={"enabled": False}),  # one version per registration
    })
    paths = Catalog.from_paths(params.paths)
    stages.train(params, paths)
    stages.evaluate(params, paths)
    # register reads the validation report from paths.reports; keep the shared fixture's untouched
    params = params.model_copy(update={"paths": params.paths.model_copy(update={"reports": prepared.paths.reports})})
    version = _register(params, small_dataset, root / "reports-v1")
    assert version == "1"
    yield {"root": root, "uri": uri, "params": params, "data": small_dataset}
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


@pytest.fixture(scope="module")
def server(registry):
    port = free_port()
    env = {
        "MLFLOW_TRACKING_URI": registry["uri"],
        "MMOPS_SERVE_TOKEN": TOKEN,
        "MMOPS_SERVE_MAX_BODY_BYTES": str(BODY_CAP),
    }
    cmd = [sys.executable, "-m", "mmops.cli.serve", "serve", "--model-name", NAME, "--port", str(port),
           "--poll-interval", "1"]
    base = f"http://127.0.0.1:{port}"
    with running(cmd, f"{base}/health", registry["root"] / "serve.log", env, timeout=180):
        with httpx.Client(base_url=base, timeout=60) as client:
            yield client, port


@pytest.fixture(scope="module")
def v1(registry):
    return load_model_uri(f"models:/{NAME}/1")


def test_served_predictions_match_predict_frame(server, v1, registry, serve_io):
    client, _ = server
    rows = serve_io.with_gaps(serve_io.rows(registry["data"], 6))
    r = client.post("/predict", json={"instances": serve_io.instances(rows)}, headers=AUTH)
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    expected = predict_frame(v1, rows[["text", "image", "audio"]])
    assert [p["label"] for p in predictions] == list(expected["label"])
    got = np.array([[p["probabilities"][c] for c in v1.classes] for p in predictions])
    np.testing.assert_allclose(got, expected[v1.classes].to_numpy(), atol=1e-5)
    assert {p["model_version"] for p in predictions} == {"1"}

    row = rows.iloc[0]
    with open(row["image"], "rb") as img, open(row["audio"], "rb") as aud:
        r = client.post("/predict", data={"text": row["text"]}, files={"image": img, "audio": aud}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["label"] == expected["label"][0]


def _raw_oversized(port: int) -> bytes:
    """Declare a 100 MB body and send none of it: the server must answer 413 from the headers."""
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(head)
        return s.recv(4096)


def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(server, serve_io, registry):
    client, port = server
    good = {"instances": [{"text": "it is an even number"}]}
    cases = [
        (dict(json={"instances": [{"text": "x"}, {"image": "%%%"}]}, headers=AUTH), 422, "instances[1].image"),
        (dict(json={"instances": [{"audio": "aGVsbG8="}]}, headers=AUTH), 422, "instances[0].audio"),
        (dict(json={"instances": [{"text": ["a"]}]}, headers=AUTH), 422, "instances[0].text"),
        (dict(json={"instances": "text"}, headers=AUTH), 422, "'instances' must be an array"),
        (dict(content=b"{oops", headers={**AUTH, "Content-Type": "application/json"}), 400, "not valid JSON"),
        (dict(content=b"x" * (BODY_CAP + 1), headers={**AUTH, "Content-Type": "application/json"}), 413,
         f"limit is {BODY_CAP}"),
        (dict(content=iter([b"x" * 400_000, b"x" * 400_000]), headers={**AUTH, "Content-Type": "application/json"}),
         413, "limit"),  # chunked: no Content-Length, caught while reading
        (dict(json=good), 401, "bearer token"),
        (dict(json=good, headers={"Authorization": "Bearer nope"}), 401, "bearer token"),
    ]
    for kwargs, status, message in cases:
        r = client.post("/predict", **kwargs)
        assert r.status_code == status, (kwargs.get("json"), r.text)
        assert message in r.json()["detail"]
        assert "Traceback" not in r.text and 'File "' not in r.text
    assert _raw_oversized(port).startswith(b"HTTP/1.1 413")
    assert client.get("/metadata").status_code == 401

    r = client.post("/predict", json=good, headers=AUTH)
    assert r.status_code == 200 and r.json()["predictions"][0]["model_version"] == "1"
    assert client.get("/health").json()["status"] == "ok"
    metrics = client.get("/metrics", headers=AUTH).text
    for status in ("200", "400", "401", "413", "422"):
        assert f'endpoint="/predict",method="POST",status="{status}"' in metrics


def test_tls_serves_https_and_refuses_plain_http(registry, serve_io):
    """`--ssl-certfile/--ssl-keyfile`: /predict over HTTPS with the self-signed certificate; plain HTTP fails."""
    cert, key = self_signed_cert(registry["root"] / "tls")
    port = free_port()
    env = {"MLFLOW_TRACKING_URI": registry["uri"], "MMOPS_SERVE_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "mmops.cli.serve", "serve", "--model-name", NAME, "--port", str(port),
           "--poll-interval", "0", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    trust = ssl.create_default_context(cafile=str(cert))
    with running(cmd, f"https://127.0.0.1:{port}/health", registry["root"] / "serve-tls.log", env, timeout=180,
                 cafile=cert):
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=trust, timeout=60) as client:
            rows = serve_io.rows(registry["data"], 2)
            r = client.post("/predict", json={"instances": serve_io.instances(rows)}, headers=AUTH)
            assert r.status_code == 200, r.text
            assert len(r.json()["predictions"]) == 2
            assert client.post("/predict", json={"instances": [{"text": "x"}]}).status_code == 401
        with pytest.raises(httpx.TransportError):  # plain HTTP: the TLS handshake fails, no HTTP answer
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert not s.recv(4096).startswith(b"HTTP/")
        with pytest.raises(httpx.ConnectError):  # and a client that does not trust the certificate stops
            httpx.get(f"https://127.0.0.1:{port}/health", timeout=10)


def _wait_for_version(client, version: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = client.get("/metadata", headers=AUTH).json()["version"]
        if seen == version:
            return
        time.sleep(0.5)
    raise AssertionError(f"server still on v{seen} after {timeout}s, expected v{version}")


def test_hot_reload_follows_the_champion_alias(server, registry):
    client, _ = server
    # the same weights with other content: a new version (identical content would reuse v1)
    (Path(registry["params"].paths.model) / "NOTES.txt").write_text("v2 of the same weights\n")
    version = _register(registry["params"], registry["data"], registry["root"] / "reports-v2")
    assert version == "2"
    _wait_for_version(client, "2")
    body = {"instances": [{"text": "smaller than 3"}]}
    assert client.post("/predict", json=body, headers=AUTH).json()["predictions"][0]["model_version"] == "2"

    MlflowClient().set_registered_model_alias(NAME, "champion", "1")  # a rollback
    _wait_for_version(client, "1")
    assert client.post("/predict", json=body, headers=AUTH).json()["predictions"][0]["model_version"] == "1"
    metrics = client.get("/metrics", headers=AUTH).text
    assert 'mmops_model_reloads_total{result="swapped"} 2.0' in metrics
    assert 'mmops_model_version{alias="champion",model="mmops-serve-e2e"} 1.0' in metrics


def test_mlflow_models_serve_answers_invocations(registry, v1, serve_io):
    rows = serve_io.with_gaps(serve_io.rows(registry["data"], 5))
    port = free_port()
    cmd = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@champion", "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port)]
    # mlflow starts `uvicorn` by name: the venv's bin must be on PATH
    env = {"MLFLOW_TRACKING_URI": registry["uri"], "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "MMOPS_MEDIA_ROOT": str(registry["data"])}  # file paths are read only inside the dataset
    with running(cmd, f"http://127.0.0.1:{port}/ping", registry["root"] / "mlflow-serve.log", env, timeout=180):
        payload = {"dataframe_split": {"columns": ["text", "image", "audio"],
                                       "data": rows[["text", "image", "audio"]].values.tolist()}}
        payload["dataframe_split"]["data"][1][2] = None  # JSON null is a missing modality too
        r = httpx.post(f"http://127.0.0.1:{port}/invocations", json=payload, timeout=120)
        outside = {"dataframe_split": {"columns": ["text", "image", "audio"], "data": [["hi", None, "/etc/passwd"]]}}
        refused = httpx.post(f"http://127.0.0.1:{port}/invocations", json=outside, timeout=60)
    assert refused.status_code >= 400 and "root:" not in refused.text
    assert "readable only inside" in refused.text
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    expected = predict_frame(v1, rows[["text", "image", "audio"]])
    assert [p["label"] for p in predictions] == list(expected["label"])
    got = np.array([[p[c] for c in v1.classes] for p in predictions])
    np.testing.assert_allclose(got, expected[v1.classes].to_numpy(), atol=1e-5)
