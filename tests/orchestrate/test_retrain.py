"""End to end: the Prefect flow on a small avdigits subset, a real Prefect server (the session's
shared one: its flow runs are told apart by the MLflow store and model name of this module), a temp
MLflow store."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from mmops.stages import DataValidationError
from servers import prefect_api_at

pytestmark = pytest.mark.slow
NAME = "mmops-e2e"


@pytest.fixture(scope="module")
def env(tmp_path_factory, shared_prefect):
    root = tmp_path_factory.mktemp("e2e")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    with prefect_api_at(shared_prefect.api):
        yield root
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


@pytest.fixture(scope="module")
def first_run(env, small_dataset, tiny_text_model):
    from mmops.orchestrate.retrain import retrain
    from pipeline_overrides import overrides_for

    overrides = overrides_for(env / "run1", tiny_text_model, **{"registry.model_name": NAME})
    return retrain(params_path=None, overrides=overrides, data_dir=str(small_dataset))


def _champion() -> str:
    return str(MlflowClient().get_model_version_by_alias(NAME, "champion").version)


def _test_rows(dataset: Path, n: int = 12) -> pd.DataFrame:
    df = pd.read_csv(dataset / "manifest.csv", dtype=str, keep_default_na=False)
    rows = df[(df["split"] == "test") & (df["image"] != "") & (df["audio"] != "")].head(n).reset_index(drop=True)
    for col in ("image", "audio"):
        rows[col] = [str(dataset / p) for p in rows[col]]
    return rows


def test_first_run_registers_champion(first_run):
    registry = first_run["registry"]
    assert registry["promoted"] is True
    assert _champion() == registry["version"] == "1"
    version = MlflowClient().get_model_version(NAME, "1")
    assert version.tags["gate.decision"] == "promoted"
    assert version.tags["gate.floor.macro_f1"].startswith("pass")
    assert len(version.tags["lineage.data_hash"]) >= 16
    assert version.tags["lineage.dvc_data_md5"] == "not tracked by dvc"  # a temp folder, not a DVC out
    assert set(first_run["metrics"]) >= {"accuracy", "macro_f1", "without_text", "without_image", "without_audio"}


def test_champion_predicts_raw_inputs(first_run, small_dataset, monkeypatch):
    monkeypatch.setenv("MMOPS_MEDIA_ROOT", str(small_dataset))  # file paths are read only inside this root
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    rows = _test_rows(small_dataset)
    by_path = model.predict(rows[["text", "image", "audio"]])
    classes = [str(d) for d in range(10)]
    assert list(by_path.columns) == ["label", *classes]
    assert set(by_path["label"]) <= set(classes)
    assert (by_path[classes].sum(axis=1) - 1).abs().max() < 1e-4
    assert (by_path["label"] == rows["label"]).mean() > 0.3  # chance is 0.1

    as_bytes = rows[["text"]].assign(
        image=[Path(p).read_bytes() for p in rows["image"]], audio=[Path(p).read_bytes() for p in rows["audio"]]
    )
    by_bytes = model.predict(as_bytes)
    pd.testing.assert_frame_equal(by_bytes, by_path)

    no_audio = model.predict(rows[["text", "image"]].assign(audio=None))
    no_image = model.predict(pd.DataFrame({"text": rows["text"], "image": [""] * len(rows), "audio": rows["audio"]}))
    for out in (no_audio, no_image):
        assert len(out) == len(rows) and (out[classes].sum(axis=1) - 1).abs().max() < 1e-4
    assert not no_audio[classes].equals(by_path[classes])


def test_an_unchanged_rerun_is_decided_before_prefect_starts(first_run, env, small_dataset, tiny_text_model,
                                                            monkeypatch):
    """A run DVC cannot describe (overrides, a temp data folder) keeps stamps: they say up to date, an
    edited param names the first stage to run, and `mmops run` with nothing changed prints the last
    result without starting a flow or registering anything."""
    from typer.testing import CliRunner

    from mmops.catalog import Catalog
    from mmops.cli import app
    from mmops.orchestrate.uptodate import check
    from mmops.params_file import load_params
    from pipeline_overrides import overrides_for

    overrides = overrides_for(env / "run1", tiny_text_model, **{"registry.model_name": NAME})
    params = load_params(None, overrides)
    paths = Catalog.from_paths(params.paths, data=small_dataset)
    found = check(params, paths, None, overrides, small_dataset)
    assert found.record == "stamps" and found.up_to_date, found.stale
    edited = [*overrides, "train.lr=0.002"]
    found = check(load_params(None, edited), paths, None, edited, small_dataset)
    assert list(found.stale) == ["train"] and found.stale["train"] == "its inputs, params or code changed"

    versions = {v.version for v in MlflowClient().search_model_versions(f"name='{NAME}'")}
    monkeypatch.chdir(env)  # no params.yaml here: defaults plus the overrides, as the first run had
    args = ["run", "--data", str(small_dataset)] + [a for o in overrides for a in ("--set", o)]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "up to date: every stage's last result still stands (stamps" in out.output and "nothing ran" in out.output
    assert f"{NAME} v1" in out.output
    assert {v.version for v in MlflowClient().search_model_versions(f"name='{NAME}'")} == versions


def test_worse_model_leaves_champion(first_run, env, small_dataset, tiny_text_model):
    from mmops.orchestrate.retrain import retrain
    from pipeline_overrides import overrides_for

    overrides = overrides_for(env / "run2", tiny_text_model, **{"registry.model_name": NAME, "train.lr": 0.0})
    result = retrain(params_path=None, overrides=overrides, data_dir=str(small_dataset))
    assert result["registry"]["promoted"] is False
    assert _champion() == "1"
    client = MlflowClient()
    challenger = result["registry"]["version"]  # run 1 may also have registered its int8 variant
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == challenger
    assert client.get_model_version(NAME, challenger).tags["gate.decision"] == "rejected"
    failed = {r["rule"] for r in result["registry"]["decision"]["rules"] if not r["passed"]}
    assert "regression.macro_f1" in failed


def test_invalid_data_stops_before_training(first_run, env, mislabeled_dataset, tiny_text_model):
    from mmops.orchestrate.retrain import retrain
    from pipeline_overrides import overrides_for

    broken, bad_id = mislabeled_dataset
    versions_before = {str(v.version) for v in MlflowClient().search_model_versions(f"name='{NAME}'")}

    run_dir = env / "run3"
    with pytest.raises(DataValidationError, match=bad_id):
        retrain(params_path=None, overrides=overrides_for(run_dir, tiny_text_model, **{"registry.model_name": NAME}),
                data_dir=str(broken))
    assert not (run_dir / "features").exists() and not (run_dir / "model").exists()
    assert {str(v.version) for v in MlflowClient().search_model_versions(f"name='{NAME}'")} == versions_before
    assert _champion() == "1"


def test_rollback_holds_over_an_unchanged_rerun_until_released(first_run, env, small_dataset, tiny_text_model):
    """The issue's scenario through the flow: a person rolls `champion` back (here onto the worse v of
    run 2); rerunning the first run unchanged must neither register anything nor re-promote over
    that decision. After `release`, the same unchanged rerun may promote again (its model passes)."""
    from mmops.orchestrate.retrain import retrain
    from mmops.registry.promotion import read_history, release, rollback
    from pipeline_overrides import overrides_for

    client = MlflowClient()
    worse = next(str(v.version) for v in client.search_model_versions(f"name='{NAME}'")
                 if v.tags.get("gate.decision") == "rejected" and not v.tags.get("mmops.variant"))
    rollback(client, NAME, "a person prefers the other one", to=worse)
    versions = {str(v.version) for v in client.search_model_versions(f"name='{NAME}'")}
    moves = len(read_history(client, NAME))
    overrides = overrides_for(env / "run1", tiny_text_model, **{"registry.model_name": NAME})

    again = retrain(params_path=None, overrides=overrides, data_dir=str(small_dataset))["registry"]
    assert _champion() == worse and again["champion_version"] == worse
    assert again["pin"] and again["pin"]["version"] == worse
    assert {str(v.version) for v in client.search_model_versions(f"name='{NAME}'")} == versions
    assert len(read_history(client, NAME)) == moves  # nothing moved

    release(client, NAME, "done with the comparison")
    after = retrain(params_path=None, overrides=overrides, data_dir=str(small_dataset))["registry"]
    assert after["version"] == "1" and after["promoted"] is True and _champion() == "1"
    assert {str(v.version) for v in client.search_model_versions(f"name='{NAME}'")} == versions  # reused v1
