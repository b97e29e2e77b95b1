"""`mmops predict`: batch inference over a dataset folder's manifest."""

from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from mmops.cli.serve import app
from mmops.data.manifest import read_manifest
from mmops.inference.model_dir import load_model_dir
from mmops.inference.predict import predict_frame


def test_predict_writes_one_row_per_sample(served_model_dir, small_dataset, tmp_path):
    out = tmp_path / "out" / "predictions.csv"
    result = CliRunner().invoke(
        app, ["predict", "--data", str(small_dataset), "--out", str(out), "--model-uri", str(served_model_dir),
              "--batch-size", "50", "--log-dir", str(tmp_path / "log")],
    )
    assert result.exit_code == 0, result.output
    got = pd.read_csv(out, dtype={"sample_id": str, "label": str})
    manifest = read_manifest(small_dataset)
    loaded = load_model_dir(served_model_dir)
    assert list(got.columns) == ["sample_id", "label", *[f"prob_{c}" for c in loaded.classes]]
    assert list(got["sample_id"]) == list(manifest["sample_id"])

    rows = manifest[["text", "image", "audio"]].copy()
    for col in ("image", "audio"):
        rows[col] = [str(small_dataset / p) if p else "" for p in rows[col]]
    expected = predict_frame(loaded, rows.head(40))
    assert list(got["label"].head(40)) == list(expected["label"])
    probs = got[[f"prob_{c}" for c in loaded.classes]].to_numpy()
    np.testing.assert_allclose(probs[:40], expected[loaded.classes].to_numpy(), atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-4)


def test_predict_reports_a_missing_dataset(tmp_path):
    result = CliRunner().invoke(app, ["predict", "--data", str(tmp_path / "nope"), "--model-uri",
                                      str(tmp_path / "model"), "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 1
    assert "no manifest.csv" in " ".join(result.output.split())  # rich wraps long lines
    assert not (tmp_path / "p.csv").exists()
