"""A tampered registry artifact is refused by serving, batch predict and the pyfunc; the old
champion keeps serving and /health reports the version it could not load."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from mmops.inference.predict import load_model_uri
from mmops.inference.verify import ModelVerificationError
from mmops.registry.register import log_pyfunc
from mmops.serve.app import create_app
from mmops.serve.reloader import RegistrySource
from mmops.serve.settings import ServeSettings

NAME = "verified-reload"


@pytest.fixture(scope="module")
def registry(served_model_dir, tmp_path_factory):
    """Two versions of the same folder (different lineage) in a SQLite store with artifacts in tmp."""
    root = tmp_path_factory.mktemp("verified")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    experiment = client.create_experiment("verified", artifact_location=(root / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        versions = [log_pyfunc(client, served_model_dir, NAME, "model", {"lineage.params_hash": p}) for p in "ab"]
    assert versions == ["1", "2"]
    client.set_registered_model_alias(NAME, "champion", "1")
    yield client
    mlflow.set_tracking_uri(None)
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


def _tamper(client: MlflowClient, version: str) -> None:
    """Change one byte of the checkpoint inside the registry's copy of `version`."""
    stored = Path(urlparse(client.get_model_version_download_uri(NAME, version)).path)
    checkpoint = next(stored.rglob("checkpoint.pt"))
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF
    checkpoint.write_bytes(bytes(data))


def test_tampered_version_is_refused_everywhere_and_v1_keeps_serving(registry, tmp_path):
    client = registry
    assert client.get_model_version(NAME, "2").tags["gate.decision"] == "pending"  # from the moment it exists
    body = {"instances": [{"text": "three plus four"}]}
    with TestClient(create_app(ServeSettings(poll_interval_s=0), RegistrySource(NAME))) as c:
        assert c.post("/predict", json=body).json()["predictions"][0]["model_version"] == "1"
        _tamper(client, "2")
        client.set_registered_model_alias(NAME, "champion", "2")

        watcher = c.app.state.serve["watcher"]
        assert watcher.check_once() is False
        assert c.post("/predict", json=body).json()["predictions"][0]["model_version"] == "1"
        health = c.get("/health").json()
        assert (health["version"], health["desired_version"], health["in_sync"]) == ("1", "2", False)
        assert "checkpoint.pt (changed)" in watcher.last_error
        assert 'mmops_model_reloads_total{result="load_failed"} 1.0' in c.get("/metrics").text
        assert "mmops_model_in_sync 0.0" in c.get("/metrics").text

    with pytest.raises(ModelVerificationError, match=r"verified-reload v2: .*checkpoint\.pt \(changed\)"):
        load_model_uri(f"models:/{NAME}@champion", tmp_path / "predict")
    with pytest.raises(ModelVerificationError, match=r"checkpoint\.pt \(changed\)"):
        mlflow.pyfunc.load_model(f"models:/{NAME}/2")
    assert load_model_uri(f"models:/{NAME}/1", tmp_path / "v1").classes  # the untouched version still loads
