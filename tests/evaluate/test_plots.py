"""Evaluation figures are real PNGs; the DVC plot data files parse and render with `dvc plots show`."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from mmops.evaluate.plots import write_plots

REPO = Path(__file__).resolve().parents[2]
PNGS = ("confusion_matrix.png", "roc.png", "pr.png", "reliability.png", "modality_f1.png")
DATA = ("confusion.csv", "roc.json", "pr.json", "reliability.json")


def _toy(tmp_path):
    rng = np.random.default_rng(0)
    classes = ["zero", "one", "two"]
    labels = rng.integers(0, 3, 40)
    logits = rng.normal(size=(40, 3)) + 2 * np.eye(3)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    metrics = {"macro_f1": 0.7, "ece": 0.1, "without_text": {"accuracy": 0.5, "macro_f1": 0.4},
               "without_image": {"accuracy": 0.6, "macro_f1": 0.55}}
    out = tmp_path / "artifacts" / "metrics"
    out.mkdir(parents=True)
    return write_plots(labels, probs, classes, metrics, out), out, labels, classes


def test_write_plots_writes_pngs_and_data_files(tmp_path):
    written, out, labels, classes = _toy(tmp_path)
    assert {p.name for p in written} == set(PNGS) | set(DATA)
    for name in PNGS:
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.size[0] >= 300 and img.size[1] >= 300, name
    rows = list(csv.DictReader(open(out / "confusion.csv")))
    assert len(rows) == len(labels) and rows[0].keys() == {"actual", "predicted"}
    assert [r["actual"] for r in rows] == [classes[i] for i in labels]
    roc = json.loads((out / "roc.json").read_text())["roc"]
    assert {r["class"] for r in roc} == set(classes) and all(0 <= r["fpr"] <= 1 and 0 <= r["tpr"] <= 1 for r in roc)
    rel = json.loads((out / "reliability.json").read_text())["reliability"]
    assert len(rel) == 15 and sum(r["count"] for r in rel) == len(labels)


def test_dvc_plots_show_renders_the_repo_plot_definitions(tmp_path):
    """The repo's dvc.yaml (top-level `plots:` + the evaluate stage) renders each evaluate plot exactly once."""
    _, out, _, _ = _toy(tmp_path)
    assert yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    for name in ("dvc.yaml", "params.yaml"):  # dvc.yaml reads paths.data from params.yaml
        shutil.copy(REPO / name, tmp_path / name)
    dvc = str(Path(sys.executable).with_name("dvc"))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True, env=env)
    shown = subprocess.run([dvc, "plots", "show", "--json"], cwd=tmp_path, check=True, env=env,
                           capture_output=True, text=True)
    data = json.loads(shown.stdout)
    assert "errors" not in data or not data["errors"], data.get("errors")
    rendered = data.get("data", data)
    for name in PNGS + DATA:
        assert sum(key.endswith(name) for key in rendered) == 1, (name, list(rendered))
    for name in DATA:
        (entry,) = next(v for k, v in rendered.items() if k.endswith(name))
        assert entry["type"] == "vega", (name, entry)
    roc = json.dumps(next(v for k, v in rendered.items() if k.endswith("roc.json")))
    assert '"fpr"' in roc and '"tpr"' in roc
    html = subprocess.run([dvc, "plots", "show", "-o", "html"], cwd=tmp_path, check=True, env=env,
                          capture_output=True, text=True)
    page = tmp_path / "html" / "index.html"
    assert page.exists() and page.stat().st_size > 1000, html.stdout
    shutil.rmtree(tmp_path / ".dvc", ignore_errors=True)
