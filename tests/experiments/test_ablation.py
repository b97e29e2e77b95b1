"""Ablation: every single modality and every fusion on the same splits, table + MLflow runs."""

import json

from mmops.catalog import CHECKPOINT, Catalog
from mmops.experiments.ablation import ablate, default_variants, render_table


def test_default_variants_cover_singles_and_every_fusion(prepared):
    from mmops.models.components import FUSIONS

    names = [name for name, _ in default_variants(prepared)]
    assert names[:3] == ["text", "image", "audio"]
    assert {n.split(" (")[1].rstrip(")") for n in names[3:]} == set(FUSIONS.names())


def test_ablation_trains_each_variant_and_logs_to_mlflow(prepared, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = prepared.model_copy(update={"train": prepared.train.model_copy(update={"epochs": 1})})
    variants = [v for v in default_variants(params, ["concat", "gated"]) if v[0] != "text"]
    results = ablate(params, Catalog.from_paths(params.paths), tmp_path / "ablation", variants)

    assert list(results) == ["image", "audio", "text+image+audio (concat)", "text+image+audio (gated)"]
    assert json.loads((tmp_path / "ablation" / "ablation.json").read_text()) == results
    table = (tmp_path / "ablation" / "ablation.md").read_text()
    assert table == render_table(results) and "shifted macro-F1" in table and "Best fusion" in table
    assert (tmp_path / "ablation" / "text-image-audio-gated" / "model" / CHECKPOINT).exists()

    runs = mlflow.search_runs(experiment_names=[params.registry.experiment])
    kinds = runs["tags.mmops.kind"].value_counts().to_dict()
    assert kinds == {"ablation": 1, "ablation-variant": 4}
    child = runs[runs["tags.mlflow.runName"] == "image"].iloc[0]
    assert child["metrics.macro_f1"] == results["image"]["macro_f1"]
    assert child["metrics.shifted.accuracy"] == results["image"]["shifted"]["accuracy"]
