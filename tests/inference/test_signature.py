"""The registered pyfunc's MLflow signature and input example: optional string inputs (media as
base64), `label` + one probability column per class out, as the pyfunc really returns them; a real
`mlflow models predict` subprocess validates a JSON input against it. The version and the registered
model carry their model cards."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image

from mmops.catalog import Catalog
from mmops.inference.pyfunc import input_example, pyfunc_signature
from mmops.registry.register import register
from mmops.registry.scoring import frozen_test_rows
from servers import mlflow_tracking

NAME = "mmops-signature-test"
CLASSES = [str(d) for d in range(10)]
MLFLOW = str(Path(sys.executable).parent / "mlflow")


def test_the_signature_names_only_the_models_modalities_all_optional():
    classes = ["negative", "neutral", "positive"]  # a text + image model, unlike the demo
    signature = pyfunc_signature(classes, ["image", "text"])
    assert [(c.name, c.type.name, c.required) for c in signature.inputs.inputs] == [
        ("text", "string", False), ("image", "string", False)]
    assert signature.outputs.input_names() == ["label", *classes]
    example = input_example(["text", "image"])
    assert list(example.columns) == ["text", "image"] and example["image"].isna().tolist() == [False, True]
    with Image.open(io.BytesIO(base64.b64decode(example["image"][0]))) as image:
        assert image.format == "PNG"


@pytest.fixture(scope="module")
def registered(evaluated_copy, tmp_path_factory):
    """The shared trained model registered (and promoted) in a SQLite store of this module; (uri, result, data)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('signature-store') / 'mlflow.db'}"
    params, catalog = evaluated_copy(NAME)
    with mlflow_tracking(uri):
        result = register(params, catalog)
        assert result["promoted"]
        yield uri, result, catalog


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _rows(catalog: Catalog, n: int = 4) -> pd.DataFrame:
    """Raw test rows with media as base64 (what a JSON client sends); the last one text only."""
    frame = frozen_test_rows(catalog.data, catalog.splits_csv).head(n)
    rows = pd.DataFrame({"text": frame["text"], "image": [_b64(Path(p)) for p in frame["image"]],
                         "audio": [_b64(Path(p)) for p in frame["audio"]]}).reset_index(drop=True)
    rows.loc[n - 1, ["image", "audio"]] = None
    return rows


@pytest.mark.slow  # registers the shared trained model once
def test_the_champion_has_a_signature_and_an_example_that_agree_with_predict(registered):
    uri, result, catalog = registered
    info = mlflow.models.get_model_info(f"models:/{NAME}@champion")
    assert info.signature is not None
    assert [(c.name, c.type.name, c.required) for c in info.signature.inputs.inputs] == [
        ("text", "string", False), ("image", "string", False), ("audio", "string", False)]
    assert info.signature.outputs.input_names() == ["label", *CLASSES]

    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    example = model.input_example
    assert list(example.columns) == ["text", "image", "audio"] and len(example) == 2
    for frame in (example, _rows(catalog)):
        out = model.predict(frame)
        assert mlflow.models.infer_signature(frame, out).outputs == info.signature.outputs  # names and dtypes
        assert set(out["label"]) <= set(CLASSES) and ((out[CLASSES].sum(axis=1) - 1).abs() < 1e-4).all()
    with pytest.raises(mlflow.exceptions.MlflowException, match="text"):
        model.predict(pd.DataFrame({"text": [3, 4]}))  # the schema is enforced: text is a string


def _predict_cli(uri: str, tmp_path: Path, payload: dict) -> subprocess.CompletedProcess:
    """`mlflow models predict` on `payload` as a JSON file, in this environment (no media root: base64 only)."""
    (tmp_path / "input.json").write_text(json.dumps(payload))
    env = {k: v for k, v in os.environ.items() if k != "MMOPS_MEDIA_ROOT"} | {"MLFLOW_TRACKING_URI": uri}
    return subprocess.run(
        [MLFLOW, "models", "predict", "-m", f"models:/{NAME}@champion", "-i", str(tmp_path / "input.json"),
         "-t", "json", "-o", str(tmp_path / "out.json"), "--env-manager", "local"],
        env=env, capture_output=True, text=True, timeout=600,
    )


@pytest.mark.slow  # a `mlflow models predict` subprocess
def test_mlflow_models_predict_takes_base64_media_and_missing_modalities_as_json(registered, tmp_path):
    uri, result, catalog = registered
    rows = _rows(catalog)
    split = json.loads(rows.to_json(orient="split", index=False))
    done = _predict_cli(uri, tmp_path, {"dataframe_split": split})
    assert done.returncode == 0, done.stderr[-3000:]
    predicted = json.loads((tmp_path / "out.json").read_text())["predictions"]
    expected = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(rows)
    assert [p["label"] for p in predicted] == list(expected["label"])
    assert max(abs(p[c] - expected[c][i]) for i, p in enumerate(predicted) for c in CLASSES) < 1e-5


@pytest.mark.slow  # registers the shared trained model once
def test_the_version_and_the_registered_model_carry_their_cards(registered):
    uri, result, _ = registered
    client = MlflowClient(uri)
    card = client.get_model_version(NAME, result["version"]).description
    assert "**promoted**" in card and "| floor.accuracy |" in card and "| 0.01 | pass |" in card
    assert result["lineage"]["git_commit"][:12] in card and result["lineage"]["split_rows"] in card
    assert f'load_model("models:/{NAME}/{result["version"]}")' in card
    described = client.get_registered_model(NAME).description
    assert f"Champion: [v{result['version']}]" in described and "into 10 classes" in described
