"""Bring your own data: `mmops run --data DIR` on generated datasets unlike the demo (string labels,
colour photos of mixed sizes and formats, 2-4 s clips at 44.1/22.05/16 kHz in WAV/FLAC/MP3 with the
cue anywhere, long texts), with the project's params.yaml unchanged; the registered model then
predicts from raw rows through the pyfunc and through the serving app."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient

from datagen.unlike_demo import make_dataset
from mmops.catalog import Catalog
from mmops.params_file import load_params
from mmops.processes import stop_group
from servers import prefect_api_at

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
MMOPS = [sys.executable, "-m", "mmops.cli"]
CLASSES = ["negative", "neutral", "positive"]


@pytest.fixture(scope="module", autouse=True)
def started(tmp_path_factory, shared_prefect):
    """A working folder holding only the project's params.yaml, its own MLflow store, the session's Prefect
    server, and `mmops run --data` on a generated dataset started in the background when the module starts:
    the in-process tests of the module run while it trains (`project` waits for it)."""
    root = tmp_path_factory.mktemp("byod")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    data = make_dataset(root / "shapes", n_per_class=30, p_uninformative=0.35)  # while the server boots, if it does
    with prefect_api_at(shared_prefect.api) as api:
        env = {**os.environ, "PREFECT_API_URL": api, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
        with open(root / "run.out", "w") as out, open(root / "run.err", "w") as err:  # files: no pipe to drain
            proc = subprocess.Popen([*MMOPS, "run", "--data", str(data)], cwd=root, env=env, stdout=out,
                                    stderr=err, text=True, start_new_session=True)
            try:
                yield root, data, env, proc
            finally:
                stop_group(proc, timeout=30)  # only if nothing waited for it


@pytest.fixture(scope="module")
def project(started):
    """(folder, dataset, env, the finished `mmops run`)."""
    root, data, env, proc = started
    try:
        proc.wait(timeout=1500)
    except subprocess.TimeoutExpired:
        stop_group(proc)
    run = subprocess.CompletedProcess(proc.args, proc.returncode, (root / "run.out").read_text(),
                                      (root / "run.err").read_text())
    return root, data, env, run


@pytest.mark.parametrize("variant,used", [("no_audio", ["text", "image"]), ("no_image", ["text", "audio"])])
def test_two_modalities_train_register_gate_and_serve(variant, used, tmp_path, tiny_text_model, monkeypatch):
    data = make_dataset(tmp_path / variant, n_per_class=15, variant=variant)
    params = load_params(REPO / "params.yaml", [
        f"paths.{k}={tmp_path / k}" for k in ("reports", "features", "model", "metrics", "cache")
    ] + [f"model.text.options.pretrained={tiny_text_model}", "model.text.options.sha256=null", "train.epochs=3",
         "registry.model_name=byod-" + variant, "quantize.enabled=false"])
    paths = Catalog.from_paths(params.paths, data=data)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    os.environ["MLFLOW_TRACKING_URI"] = mlflow.get_tracking_uri()
    try:
        from mmops import stages

        stages.validate(params, paths)
        resolved = stages.preprocess(params, paths)
        assert resolved.modalities == used
        stages.train(params, paths)
        metrics = stages.evaluate(params, paths)
        result = stages.register(params, paths)
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    assert {f"without_{m}" for m in used} <= set(metrics) and not any(m not in used for m in ("text", "image", "audio")
                                                                      if f"without_{m}" in metrics)
    rules = {r["rule"] for r in result["decision"]["rules"]}
    assert not any("without_" + m in r for r in rules for m in ("text", "image", "audio") if m not in used)
    monkeypatch.setenv("MMOPS_MEDIA_ROOT", str(data))
    model = mlflow.pyfunc.load_model(f"models:/byod-{variant}/{result['version']}")
    manifest = pd.read_csv(data / "manifest.csv", dtype=str, keep_default_na=False).head(4)
    rows = manifest[[c for c in ("text", "image", "audio") if c in manifest]].copy()
    for column in ("image", "audio"):
        if column in rows:
            rows[column] = [str(data / p) if p else "" for p in rows[column]]
    assert set(model.predict(rows)["label"]) <= {"negative", "neutral", "positive"}


def test_run_on_unseen_data_with_zero_configuration(project):
    root, data, _, run = project
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    resolved = yaml.safe_load((root / "artifacts/features/resolved.yaml").read_text())
    assert resolved["classes"] == CLASSES and resolved["modalities"] == ["text", "image", "audio"]
    assert resolved["features"]["image"]["mode"] == "rgb" and resolved["features"]["audio"]["max_seconds"] >= 3
    assert "data: modalities" in run.stdout and "text, image, audio" in run.stdout  # the summary says what was used
    metrics = json.loads((root / "artifacts/metrics/metrics.json").read_text())
    assert metrics["accuracy"] > 0.6  # 3 classes, chance 0.33; README has the full-size measurement
    registry = json.loads((root / "reports/registry.json").read_text())
    assert registry["version"] == "1"


def test_registered_model_predicts_raw_rows_through_pyfunc_and_serving(project, monkeypatch):
    root, data, env, run = project
    assert run.returncode == 0
    manifest = pd.read_csv(data / "manifest.csv", dtype=str, keep_default_na=False).head(6)
    rows = manifest[["text", "image", "audio"]].copy()
    for column in ("image", "audio"):
        rows[column] = [str(data / p) if p else "" for p in rows[column]]
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    monkeypatch.setenv("MMOPS_MEDIA_ROOT", str(data))  # the pyfunc reads file paths only inside this root
    model = mlflow.pyfunc.load_model("models:/mmops-classifier/1")
    predicted = model.predict(rows)
    assert list(predicted.columns) == ["label", *CLASSES] and set(predicted["label"]) <= set(CLASSES)

    from mmops.serve.app import create_app
    from mmops.serve.reloader import RegistrySource
    from mmops.serve.settings import ServeSettings

    source = RegistrySource("mmops-classifier", alias="challenger", tracking_uri=env["MLFLOW_TRACKING_URI"])
    settings = ServeSettings(poll_interval_s=0, token="", max_body_bytes=4_000_000)
    instances = [{"text": r.text, **{m: base64.b64encode(Path(getattr(r, m)).read_bytes()).decode()
                                     for m in ("image", "audio") if getattr(r, m)}} for r in rows.itertuples()]
    with TestClient(create_app(settings, source)) as client:
        response = client.post("/predict", json={"instances": instances})
    assert response.status_code == 200, response.text
    served = [p["label"] for p in response.json()["predictions"]]
    assert served == list(predicted["label"])
