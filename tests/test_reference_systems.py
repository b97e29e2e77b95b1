"""The spec's two reference systems, each trained end to end by the real CLI,
`mmops run --params configs/<file>.yaml --data DIR` (the session's Prefect server, a temp MLflow
store), on small generated data unlike the demo, then registered, promoted and served through the
serving app. The configs are used as a user would use them: what is test-only (tiny sizes, local
weight pins, a small epoch budget, floors for 90 rows) comes in by `--set`.

- CNN + RNN image-text classifier (`configs/cnn_rnn_image_text.yaml`): short reviews with a
  96 x 72 px colour photo and no audio column at all (`datagen/reviews.py`).
- Three-modality sentiment system (`configs/sentiment_three_modality.yaml`): the real
  all-MiniLM-L6-v2, a torchvision ResNet-50 from a local safetensors file (random init, saved here
  where the config expects it and pinned by sha256), a tiny wav2vec2 saved with `save_pretrained`
  (pinned), attention-weighted (`gated`) fusion; short reviews labelled negative / neutral /
  positive with 96 x 72 px colour photos and 22.05 kHz voice notes (resampled to the model's 16 kHz).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
import yaml
from datagen.reviews import CLASSES, make_reviews
from fastapi.testclient import TestClient
from servers import prefect_api_at

from mmops.data.hashing import file_sha256
from mmops.processes import stop_group

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
MMOPS = [sys.executable, "-m", "mmops.cli"]
NAME = "mmops-classifier"  # the configs keep the default registry name
# Test-only: one featurizing process, no int8 variant (compress/ tests it), small heads, floors for 14 test rows.
FAST = ["features.store.workers=1", "quantize.enabled=false", "model.width=32", "model.head.hidden=64",
        "train.batch_size=16", "train.lr=0.005", "gate.floors.accuracy=0.5", "gate.floors.macro_f1=0.4",
        "orchestration.max_concurrent_runs=2"]


def start_run(root: Path, config: str, data: Path, overrides: list[str], api: str) -> subprocess.Popen:
    """Start `mmops run --params configs/<config> --data <data> --set ...` in `root` (its own MLflow store)."""
    env = {**os.environ, "PREFECT_API_URL": api, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    cmd = [*MMOPS, "run", "--params", str(REPO / "configs" / config), "--data", str(data),
           *(a for o in overrides for a in ("--set", o))]
    with open(root / "run.out", "w") as out, open(root / "run.err", "w") as err:  # files: no pipe to drain
        return subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=err, text=True, start_new_session=True)


def finished(root: Path, proc: subprocess.Popen) -> subprocess.CompletedProcess:
    """Wait for a started run; its output, asserting that it succeeded."""
    try:
        proc.wait(timeout=1200)
    finally:
        stop_group(proc, timeout=30)  # only if it is still running
    run = subprocess.CompletedProcess(proc.args, proc.returncode, (root / "run.out").read_text(),
                                      (root / "run.err").read_text())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    return run


@pytest.fixture(scope="module")
def started(tmp_path_factory, shared_prefect, tiny_audio_model):
    """Both systems' data, weights and `mmops run`, started together when the module starts: two mostly
    single-threaded pipelines share two cores better than they run one after the other (each is a
    project of its own, so the one-retrain-at-a-time limit, a Prefect global concurrency limit, is
    raised to two). Each test waits for its own ({system: (folder, dataset, process)})."""
    import torchvision
    from safetensors.torch import save_file

    cnn, sent = tmp_path_factory.mktemp("cnn_rnn"), tmp_path_factory.mktemp("sentiment")
    photos = make_reviews(cnn / "photos", n_per_class=30, seed=3, modalities=("text", "image"))
    reviews = make_reviews(sent / "reviews", n_per_class=30, seed=5)
    weights = sent / "weights/resnet50.safetensors"  # where the config expects the user's file
    weights.parent.mkdir()
    torch.manual_seed(0)
    save_file(torchvision.models.resnet50(weights=None).state_dict(), str(weights))
    procs = {}
    with prefect_api_at(shared_prefect.api) as api:
        try:
            procs["cnn_rnn"] = (cnn, photos, start_run(cnn, "cnn_rnn_image_text.yaml", photos, [
                *FAST, "train.epochs=8", "train.warmup_epochs=0", "features.image.size=24",
                "model.text.options.embedding_dim=16", "model.text.options.hidden=16",
                "model.image.options.channels=[8,16]",
            ], api))
            procs["sentiment"] = (sent, reviews, start_run(sent, "sentiment_three_modality.yaml", reviews, [
                *FAST, "train.epochs=10", f"model.image.options.sha256={file_sha256(weights)}",
                f"model.audio.options.pretrained={tiny_audio_model}",
                f"model.audio.options.sha256={file_sha256(tiny_audio_model / 'model.safetensors')}",
                "features.image.size=32", "model.image.options.min_size=64", "model.fusion.options.hidden=16",
            ], api))
            yield procs
        finally:
            for _, _, proc in procs.values():
                stop_group(proc, timeout=30)  # only those no test waited for


def served_predictions(root: Path, data: Path, rows: pd.DataFrame) -> list[dict]:
    """POST `rows` (manifest cells: text, media paths) as base64 JSON to the serving app on the champion."""
    from mmops.serve.app import create_app
    from mmops.serve.reloader import RegistrySource
    from mmops.serve.settings import ServeSettings

    media = [m for m in ("image", "audio") if m in rows]
    instances = [{"text": row["text"], **{m: base64.b64encode((data / row[m]).read_bytes()).decode()
                                          for m in media if row[m]}} for _, row in rows.iterrows()]
    source = RegistrySource(NAME, alias="champion", tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    settings = ServeSettings(poll_interval_s=0, token="", max_body_bytes=8_000_000)
    with TestClient(create_app(settings, source)) as client:
        response = client.post("/predict", json={"instances": instances})
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def registered(root: Path):
    """The champion as the registry hands it out (verified against its recorded digests)."""
    from mmops.inference.predict import load_model_uri

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    return load_model_uri(f"models:/{NAME}@champion", root / "champion")


def check_trained_registered_and_serving(root: Path, data: Path, run, classes: list[str], modalities: list[str]):
    """The run's summary, resolved features, gate decision and a real /predict; returns the champion."""
    resolved = yaml.safe_load((root / "artifacts/features/resolved.yaml").read_text())
    assert resolved["classes"] == sorted(classes) and resolved["modalities"] == modalities
    assert "data: modalities" in run.stdout and ", ".join(modalities) in run.stdout
    metrics = json.loads((root / "artifacts/metrics/metrics.json").read_text())
    registry = json.loads((root / "reports/registry.json").read_text())
    assert registry["version"] == "1" and registry["promoted"] is True, (metrics, registry["decision"])
    assert {f"without_{m}" for m in modalities} <= set(metrics)

    manifest = pd.read_csv(data / "manifest.csv", dtype=str, keep_default_na=False)
    rows = manifest.head(12)
    predictions = served_predictions(root, data, rows)
    assert len(predictions) == len(rows)
    for p in predictions:
        assert set(p["probabilities"]) == set(classes) and p["label"] in classes
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-4
        assert p["label"] == max(p["probabilities"], key=p["probabilities"].get)
    served_accuracy = (pd.Series([p["label"] for p in predictions]) == rows["label"].to_numpy()).mean()
    assert served_accuracy > 0.5, served_accuracy  # the trained model answers (chance is 1/3)
    return registered(root)


def test_cnn_rnn_image_text_trains_registers_and_serves(started):
    root, data, proc = started["cnn_rnn"]
    assert list(pd.read_csv(data / "manifest.csv", nrows=1).columns) == ["sample_id", "label", "text", "image"]
    run = finished(root, proc)
    champion = check_trained_registered_and_serving(root, data, run, list(CLASSES), ["text", "image"])
    model = champion.model
    assert type(model.encoders["text"]).__name__ == "GRUTextEncoder"
    assert type(model.encoders["image"]).__name__ == "SmallCNNImageEncoder"
    assert set(model.encoders) == {"text", "image"} and champion.extractor.cfg.image.mode == "rgb"


def test_three_modality_sentiment_system_trains_registers_and_serves(started, monkeypatch):
    root, data, proc = started["sentiment"]
    assert {info.samplerate for info in _audio_infos(data)} == {22050}  # resampled to the model's 16 kHz
    run = finished(root, proc)
    assert "not pinned" not in run.stderr  # every weight file was checked against its sha256
    champion = check_trained_registered_and_serving(root, data, run, list(CLASSES), ["text", "image", "audio"])
    model = champion.model
    assert {m: type(e).__name__ for m, e in model.encoders.items()} == {
        "text": "HFTextEncoder", "image": "ResNet50ImageEncoder", "audio": "HFAudioEncoder"}
    assert champion.extractor.cfg.audio.sample_rate == 16000

    from mmops.inference.predict import predict_frame

    rows = pd.read_csv(data / "manifest.csv", dtype=str, keep_default_na=False).head(6)
    for m in ("image", "audio"):
        rows[m] = [str(data / p) if p else "" for p in rows[m]]
    monkeypatch.setenv("MMOPS_MEDIA_ROOT", str(data))  # file paths are read only inside this root
    predict_frame(champion, rows[["text", "image", "audio"]])
    weights_seen = model.fusion.last_weights  # attention-weighted fusion: a softmax weight per modality
    assert weights_seen.shape == (len(rows), 3)
    assert torch.allclose(weights_seen.sum(1), torch.ones(len(rows)), atol=1e-5)
    assert (weights_seen.std(0) > 0).any()  # the weights depend on the sample, not one fixed mix


def _audio_infos(data: Path):
    import soundfile as sf

    manifest = pd.read_csv(data / "manifest.csv", dtype=str, keep_default_na=False)
    return [sf.info(str(data / p)) for p in manifest["audio"] if p]
