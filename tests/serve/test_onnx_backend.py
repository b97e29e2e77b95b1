"""`serve --backend onnx`: the alias's version served through its registered ONNX variant, with the
same answers as the PyTorch backend; a version without one, or a tampered one, is refused."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from typer.testing import CliRunner

from mmops.catalog import Catalog
from mmops.cli.serve import app as serve_cli
from mmops.inference.onnx_model import ONNX_FILE, OnnxModel
from mmops.inference.predict import load_model_uri
from mmops.inference.verify import MODEL_HASH_TAG, ModelVerificationError
from mmops.registry.promotion import ONNX_VERSION_TAG, VARIANT_OF_TAG, VARIANT_TAG
from mmops.registry.register import log_pyfunc, register_onnx_variant
from mmops.serve.app import create_app
from mmops.serve.reloader import NoOnnxVariant, RegistrySource
from mmops.serve.settings import ServeSettings

NAME = "onnx-serve"


@pytest.fixture(scope="module")
def registry(prepared, served_model_dir, tmp_path_factory):
    """v1: the shared model, registered with its ONNX variant (v2) by `register_onnx_variant`;
    v3: the same folder registered again (other lineage) without one; alias `plain` -> v3."""
    root = tmp_path_factory.mktemp("onnx-serve")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    experiment = client.create_experiment("onnx-serve", artifact_location=(root / "artifacts").as_uri())
    params = prepared.model_copy(update={"onnx": prepared.onnx.model_copy(update={"enabled": True})})
    paths = Catalog.from_paths(prepared.paths.model_copy(update={"model": served_model_dir}))
    with mlflow.start_run(experiment_id=experiment):
        lineage = {"params_hash": "a", "model_hash": "m"}
        v1 = log_pyfunc(client, served_model_dir, NAME, "model", {f"lineage.{k}": v for k, v in lineage.items()})
        report, onnx_version = register_onnx_variant(params, paths, client, NAME, v1, lineage)
        v3 = log_pyfunc(client, served_model_dir, NAME, "model", {"lineage.params_hash": "b"})
    assert (v1, onnx_version, v3) == ("1", "2", "3"), report
    client.set_registered_model_alias(NAME, "champion", v1)
    client.set_registered_model_alias(NAME, "plain", v3)
    yield client, report
    mlflow.set_tracking_uri(None)
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


def test_the_variant_is_registered_and_tagged_like_int8(registry):
    client, report = registry
    assert report.accepted and report.max_abs_diff_probs <= 1e-4
    source, variant = client.get_model_version(NAME, "1").tags, client.get_model_version(NAME, "2").tags
    assert source[ONNX_VERSION_TAG] == "2" and source["onnx.decision"] == "registered"
    assert variant[VARIANT_TAG] == "onnx" and variant[VARIANT_OF_TAG] == "1"
    assert float(variant["onnx.max_abs_diff_probs"]) <= 1e-4 and float(source["onnx.latency_ratio"]) > 0
    assert variant[MODEL_HASH_TAG] != source[MODEL_HASH_TAG]  # its own content, pinned at registration
    assert ONNX_VERSION_TAG not in client.get_model_version(NAME, "3").tags


def test_onnx_backend_answers_like_the_torch_backend(registry, small_dataset, serve_io):
    body = {"instances": serve_io.instances(serve_io.with_gaps(serve_io.rows(small_dataset, 6)))}
    answers = {}
    for backend in ("torch", "onnx"):
        settings = ServeSettings(model_name=NAME, backend=backend, poll_interval_s=0)
        with TestClient(create_app(settings)) as c:
            response = c.post("/predict", json=body)
            assert response.status_code == 200, response.text
            answers[backend] = response.json()["predictions"]
            meta = c.get("/metadata").json()
            assert meta["backend"] == backend and meta["version"] == "1"
            assert meta["uri"] == f"models:/{NAME}/{'2' if backend == 'onnx' else '1'}"
    torch_p, onnx_p = answers["torch"], answers["onnx"]
    assert [p["label"] for p in onnx_p] == [p["label"] for p in torch_p]
    assert {p["model_version"] for p in onnx_p} == {"1"}  # the alias's version, whichever backend
    for o, t in zip(onnx_p, torch_p):
        assert set(o["probabilities"]) == set(t["probabilities"])
        assert max(abs(o["probabilities"][k] - t["probabilities"][k]) for k in t["probabilities"]) <= 1e-4


def test_a_version_without_an_onnx_variant_is_refused(registry):
    with pytest.raises(NoOnnxVariant, match=r"models:/onnx-serve/3 \(plain\) has no ONNX variant.*onnx.enabled"):
        RegistrySource(NAME, "plain", backend="onnx").load("3")
    result = CliRunner().invoke(serve_cli, ["serve", "--model-name", NAME, "--alias", "plain", "--backend", "onnx"])
    assert result.exit_code == 1, result.output
    assert "has no ONNX variant" in result.output and "--backend torch" in result.output
    result = CliRunner().invoke(serve_cli, ["serve", "--model-name", NAME, "--backend", "tensorrt"])
    assert result.exit_code == 2 and "backend" in result.output, result.output


def test_a_tampered_registered_onnx_file_is_refused(registry, tmp_path):
    client, _ = registry
    assert isinstance(load_model_uri(f"models:/{NAME}/2", tmp_path / "ok").model, OnnxModel)
    stored = Path(urlparse(client.get_model_version_download_uri(NAME, "2")).path)
    graph = next(stored.rglob(ONNX_FILE))
    data = bytearray(graph.read_bytes())
    data[len(data) // 3] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(ModelVerificationError, match=r"model\.onnx \(changed\)"):
        load_model_uri(f"models:/{NAME}/2", tmp_path / "tampered")
    with pytest.raises(ModelVerificationError):
        RegistrySource(NAME, "champion", backend="onnx").load("1")


def test_the_run_summary_has_an_onnx_variant_row(registry, capsys):
    from mmops.cli import print_summary

    _, report = registry
    base = {"model_name": NAME, "version": "1", "promoted": True, "champion_version": "1",
            "decision": {"rules": []}, "tracking_uri": "sqlite:///x.db"}
    print_summary(base | {"onnx": report.model_dump() | {"version": "2"}}, None)
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "onnx variant registered as v2 (max |Δp|" in out and "latency x" in out
    rejected = {"accepted": False, "version": None, "exported": False, "error": "OnnxExportUnsupported: gru"}
    print_summary(base | {"onnx": rejected}, None)
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "onnx variant not registered (export failed: OnnxExportUnsupported: gru)" in out
