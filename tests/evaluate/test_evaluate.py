import json
from dataclasses import replace

from PIL import Image

from mmops import stages
from mmops.catalog import METRICS_JSON, PER_CLASS_JSON, SHIFT_MD, Catalog

NEW_KEYS = {
    "macro_precision", "macro_recall", "weighted_precision", "weighted_recall", "weighted_f1",
    "roc_auc_ovr_macro", "pr_auc_ovr_macro", "auc_classes_scored", "ece", "latency",
}
FILES = {
    METRICS_JSON, PER_CLASS_JSON, "confusion_matrix.png", "roc.png", "pr.png", "reliability.png",
    "modality_f1.png", "confusion.csv", "roc.json", "pr.json", "reliability.json",
}


def test_evaluate_writes_metrics_report_and_plot(prepared, small_dataset, tmp_path):
    params = prepared.model_copy(update={"train": prepared.train.model_copy(update={"epochs": 2})})
    paths = replace(Catalog.from_paths(prepared.paths, data=small_dataset), model=tmp_path / "m", metrics=tmp_path / "metrics")
    stages.train(params, paths)
    metrics = stages.evaluate(params, paths)
    on_disk = json.loads(paths.metrics_json.read_text())
    assert on_disk == metrics
    assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["macro_f1"] <= 1
    assert metrics["n_test"] > 0
    for modality in ("text", "image", "audio"):
        assert set(metrics[f"without_{modality}"]) == {"accuracy", "macro_f1"}
    assert NEW_KEYS <= set(metrics)
    for key in NEW_KEYS - {"latency", "auc_classes_scored"}:
        assert 0 <= metrics[key] <= 1, key
    assert metrics["macro_f1"] == metrics["macro_f1"]  # not NaN
    latency = metrics["latency"]  # the served path on raw rows of paths.data (tests/evaluate/test_served_latency.py)
    assert latency["batch_1"]["n_timed"] == 50 and latency["model_only"]["batch_1"]["n_timed"] == 50
    for stats in _stat_dicts(latency):
        assert 0 < stats["p50_ms"] <= stats["p95_ms"]
    assert all(isinstance(v, (int, float)) for v in _leaves(metrics)), "metrics.json is logged to MLflow as numbers"
    assert FILES <= {p.name for p in (tmp_path / "metrics").iterdir()}
    # the shifted split is scored beside the in-domain one
    shifted = metrics["shifted"]
    assert shifted["n"] == metrics["n_test"] and 0 <= shifted["accuracy"] <= 1
    assert abs(metrics["shift_gap"]["accuracy"] - (metrics["accuracy"] - shifted["accuracy"])) < 1e-12
    shift_md = (paths.metrics / SHIFT_MD).read_text()
    assert f"| accuracy | {metrics['accuracy']:.3f} | {shifted['accuracy']:.3f} |" in shift_md
    per_class = json.loads((paths.metrics / PER_CLASS_JSON).read_text())
    assert set(prepared.classes) <= set(per_class)
    for png in (n for n in FILES if n.endswith(".png")):
        with Image.open(tmp_path / "metrics" / png) as img:
            assert img.format == "PNG" and img.size[0] > 100, png


def _leaves(d):
    for v in d.values():
        yield from _leaves(v) if isinstance(v, dict) else [v]


def _stat_dicts(d):
    for v in d.values():
        if isinstance(v, dict):
            yield from [v] if "p50_ms" in v else _stat_dicts(v)
