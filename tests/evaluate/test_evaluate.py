import json

from PIL import Image

from mmops import stages


def test_evaluate_writes_metrics_report_and_plot(prepared, tmp_path):
    params = prepared.model_copy(
        update={"paths": prepared.paths.model_copy(update={"model": tmp_path / "m", "metrics": tmp_path / "metrics"})}
    )
    params = params.model_copy(update={"train": params.train.model_copy(update={"epochs": 2})})
    stages.train(params)
    metrics = stages.evaluate(params)
    on_disk = json.loads((tmp_path / "metrics" / "metrics.json").read_text())
    assert on_disk == metrics
    assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["macro_f1"] <= 1
    for modality in ("text", "image", "audio"):
        assert set(metrics[f"without_{modality}"]) == {"accuracy", "macro_f1"}
    per_class = json.loads((tmp_path / "metrics" / "per_class.json").read_text())
    assert set(prepared.classes) <= set(per_class)
    with Image.open(tmp_path / "metrics" / "confusion_matrix.png") as img:
        assert img.size[0] > 100
