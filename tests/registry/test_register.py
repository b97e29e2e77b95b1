"""The register stage on a real (SQLite) MLflow store: gate, lineage, history, int8 variant."""

from __future__ import annotations

import shutil
from dataclasses import replace

import mlflow
import pytest
from mlflow import MlflowClient

from mmops import stages
from mmops.catalog import Catalog
from mmops.config import MODALITIES
from mmops.registry.gate import UnknownMetricError
from mmops.registry.promotion import CHAMPION, CHAMPION_INT8, current_version, read_history
from mmops.registry.register import RegistrationRefused, register
from mmops.registry.scoring import frozen_test_rows

pytestmark = pytest.mark.slow  # trains a model and registers it three times (about 3 minutes on 2 busy cores)
NAME = "mmops-register-test"
CLASSES = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def trained(prepared, store, tmp_path_factory):
    """Params with a 3-epoch model and its metrics in a temp folder (validation report copied)."""
    root = tmp_path_factory.mktemp("register")
    paths = prepared.paths.model_copy(
        update={"model": root / "model", "metrics": root / "metrics", "reports": root / "reports"}
    )
    params = prepared.model_copy(update={
        "paths": paths,
        "train": prepared.train.model_copy(update={"epochs": 3}),
        "registry": prepared.registry.model_copy(update={"model_name": NAME}),
        "gate": prepared.gate.model_copy(update={"floors": {"accuracy": 0.05, "macro_f1": 0.01}}),
    })
    catalog = Catalog.from_paths(paths)
    catalog.reports.mkdir(parents=True)
    shutil.copy(Catalog.from_paths(prepared.paths).validation_json, catalog.validation_json)
    stages.train(params, catalog)
    stages.evaluate(params, catalog)
    return params


def _with(params, **sections):
    """`params` with some keys of some sections replaced (validated, as params.yaml would be)."""
    def section(name, changes):
        current = getattr(params, name)
        return type(current).model_validate({**current.model_dump(), **changes})

    return params.model_copy(update={k: section(k, v) for k, v in sections.items()})


def _register(params, data) -> dict:
    return register(params, Catalog.from_paths(params.paths, data=data))


@pytest.fixture(scope="module")
def first(trained, small_dataset):
    params = _with(trained, quantize={"max_accuracy_drop": 0.5})
    return _register(params, small_dataset)


def test_first_model_is_promoted_with_lineage_and_int8_variant(first):
    client = MlflowClient()
    assert first["promoted"] and first["version"] == "1" and first["previous_champion"] is None
    assert not any(r["rule"].startswith("regression") for r in first["decision"]["rules"])  # floors alone decide
    quant = first["quantized"]
    assert quant["accepted"] and quant["version"] == "2"
    assert 0 < quant["size_ratio"] < 1, quant
    assert quant["latency_ratio"] > 0 and quant["accuracy_drop"] <= 0.5
    assert current_version(client, NAME, CHAMPION) == "1"
    assert current_version(client, NAME, CHAMPION_INT8) == "2"

    fp32, int8 = client.get_model_version(NAME, "1").tags, client.get_model_version(NAME, "2").tags
    for tags in (fp32, int8):
        assert len(tags["lineage.model_hash"]) == 64 and len(tags["lineage.test_data_hash"]) == 64
    assert int8["lineage.model_hash"] != fp32["lineage.model_hash"]
    assert int8["lineage.source_model_hash"] == fp32["lineage.model_hash"]
    assert fp32["lineage.test_data_hash"] == int8["lineage.test_data_hash"] == fp32["gate.test_data_hash"]
    assert int8["mmops.variant_of"] == "1" and fp32["quantize.int8_version"] == "2"
    assert float(fp32["quantize.size_ratio"]) == pytest.approx(quant["size_ratio"], abs=1e-4)
    assert fp32["gate.decision"] == "promoted" and fp32["gate.same_test_data"].startswith("pass")
    assert fp32["gate.floor.accuracy"].startswith("pass")

    moves = [(e.alias, e.from_version, e.to_version, e.action) for e in read_history(client, NAME)]
    assert moves == [(CHAMPION, None, "1", "auto-promote"), (CHAMPION_INT8, None, "2", "auto-promote")]


def test_gate_and_quantize_reports_written(first, trained):
    md = Catalog.from_paths(trained.paths).gate_md.read_text()
    assert "PROMOTE" in md and "Dynamic int8 variant: registered as v2" in md and "int8 ÷ fp32" in md
    run = first["run_id"]
    assert "Dynamic int8" in mlflow.artifacts.load_text(f"runs:/{run}/gate/quantize.md")
    assert "floor.macro_f1" in mlflow.artifacts.load_text(f"runs:/{run}/gate/gate.md")


def test_int8_champion_serves_raw_inputs(first, trained, small_dataset, monkeypatch):
    rows = frozen_test_rows(small_dataset, Catalog.from_paths(trained.paths).splits_csv).head(10)[list(MODALITIES)]
    monkeypatch.setenv("MMOPS_MEDIA_ROOT", str(small_dataset))
    int8 = mlflow.pyfunc.load_model(f"models:/{NAME}@{CHAMPION_INT8}").predict(rows)
    fp32 = mlflow.pyfunc.load_model(f"models:/{NAME}@{CHAMPION}").predict(rows)
    assert list(int8.columns) == ["label", *CLASSES]
    assert (int8[CLASSES].sum(axis=1) - 1).abs().max() < 1e-4
    assert (int8["label"] == fp32["label"]).mean() >= 0.8
    assert (int8[CLASSES] - fp32[CLASSES]).abs().max().max() < 0.2


def test_impossible_int8_threshold_registers_no_variant_and_alias_follows(first, trained, small_dataset):
    """Same model again, regression also on a modality-removed key (re-scored for both on the same rows)."""
    params = _with(
        trained,
        quantize={"max_accuracy_drop": -1.0},
        gate={"regression": {"macro_f1": {"max_drop": 0.02}, "without_audio.macro_f1": {"max_drop": 0.0}}},
    )
    (trained.paths.model / "NOTES.txt").write_text("the same weights, other content: a new version\n")
    result = _register(params, small_dataset)
    client = MlflowClient()
    assert result["version"] == "3" and result["previous_champion"] == "1"
    assert result["quantized"]["accepted"] is False and result["quantized"]["version"] is None
    rules = {r["rule"]: r for r in result["decision"]["rules"]}
    assert rules["regression.without_audio.macro_f1"]["value"] == 0.0  # the same weights score the same
    assert result["promoted"]
    assert "quantize.int8_version" not in client.get_model_version(NAME, "3").tags
    assert client.get_model_version(NAME, "3").tags["quantize.decision"] == "rejected"
    assert {str(v.version) for v in client.search_model_versions(f"name='{NAME}'")} == {"1", "2", "3"}
    assert current_version(client, NAME, CHAMPION) == "3"
    assert current_version(client, NAME, CHAMPION_INT8) is None  # v3 has no int8 variant: never a stale one
    last = read_history(client, NAME)[-2:]
    assert [(e.alias, e.from_version, e.to_version) for e in last] == [(CHAMPION, "1", "3"), (CHAMPION_INT8, "2", None)]


def test_unknown_gate_key_fails_before_registering(first, trained, small_dataset):
    params = _with(trained, gate={"floors": {"accuracy": 0.1, "without_smell.macro_f1": 0.5}})
    before = len(MlflowClient().search_model_versions(f"name='{NAME}'"))
    with pytest.raises(UnknownMetricError, match=r"without_smell\.macro_f1.*available keys: .*accuracy"):
        _register(params, small_dataset)
    assert len(MlflowClient().search_model_versions(f"name='{NAME}'")) == before


def test_failed_validation_registers_nothing(first, trained, small_dataset, tmp_path):
    import json

    catalog = Catalog.from_paths(trained.paths, data=small_dataset)
    refused = replace(catalog, reports=tmp_path / "reports")
    refused.reports.mkdir()
    report = json.loads(catalog.validation_json.read_text()) | {"passed": False}
    refused.validation_json.write_text(json.dumps(report))
    before = len(MlflowClient().search_model_versions(f"name='{NAME}'"))
    with pytest.raises(RegistrationRefused, match="data validation failed"):
        register(trained, refused)
    assert len(MlflowClient().search_model_versions(f"name='{NAME}'")) == before
    assert not refused.registry_json.exists()
