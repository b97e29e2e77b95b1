"""K-fold cross-validation: stratified disjoint folds, mean ± std and per fold, nested MLflow runs, the gate's CV rule."""

import json
from collections import Counter

import numpy as np
import pytest

from mmops.config import GateConfig
from mmops.config.experiments import CVGateRule
from mmops.errors import UserError
from mmops.experiments.cv import CV_MD, cross_validate, fold_indices, render_table
from mmops.features.shards import SplitView
from mmops.registry.gate import CV_JSON, CV_SECTIONS, cv_rules, decide, numeric, training_identity
from mmops.train.recipe import FINGERPRINT_SECTIONS

FOLDS = 3


@pytest.fixture(scope="module")
def cv_run(animals, tmp_path_factory, mlflow_uri):
    """`cross_validate` on the animals dataset, logged to MLflow."""
    params, paths = animals
    tmp = tmp_path_factory.mktemp("cv")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        summary = cross_validate(params, paths, tmp / "cv", FOLDS)
    return summary, tmp


def test_fold_indices_stratified_disjoint_cover_every_row():
    labels = np.array(["x"] * 10 + ["y"] * 7 + ["zz"] * 4)
    folds = fold_indices(labels, 4, seed=3)
    rows = np.concatenate(folds)
    assert sorted(rows.tolist()) == list(range(len(labels)))  # each row held out exactly once
    for label, n in Counter(labels).items():
        per_fold = [int((labels[f] == label).sum()) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1 and sum(per_fold) == n
    assert [f.tolist() for f in fold_indices(labels, 4, seed=3)] == [f.tolist() for f in folds]
    assert [f.tolist() for f in fold_indices(labels, 4, seed=4)] != [f.tolist() for f in folds]
    with pytest.raises(UserError, match="class 'zz' has 4 training rows, fewer than --folds 5"):
        fold_indices(labels, 5, seed=3)


def test_fold_splits_partition_train_and_never_touch_test(animals, cv_run):
    params, paths = animals
    summary, tmp = cv_run
    train, val, test = (SplitView(paths.split(s)) for s in ("train", "val", "test"))
    held_out = [SplitView(tmp / "cv" / f"fold-{k}" / "features" / "test").sample_ids for k in range(1, FOLDS + 1)]
    assert sorted(i for ids in held_out for i in ids) == sorted(train.sample_ids)
    assert [len(ids) for ids in held_out] == summary["fold_rows"]
    labels = dict(zip(train.sample_ids, train.column("labels").tolist()))
    counts = [Counter(labels[i] for i in ids) for ids in held_out]
    for label in set(labels.values()):
        assert max(c[label] for c in counts) - min(c[label] for c in counts) <= 1
    for k, ids in enumerate(held_out, 1):
        features = tmp / "cv" / f"fold-{k}" / "features"
        trained_on = SplitView(features / "train").sample_ids
        assert set(trained_on).isdisjoint(ids) and len(trained_on) + len(ids) == len(train)
        assert SplitView(features / "val").sample_ids == val.sample_ids  # epochs selected on the pipeline's val
        assert set(trained_on + ids).isdisjoint(test.sample_ids)


def test_report_has_mean_std_and_every_fold(cv_run, animals):
    params, paths = animals
    summary, _ = cv_run
    on_disk = json.loads((paths.metrics / CV_JSON).read_text())
    assert on_disk["metrics"] == summary["metrics"] and on_disk["folds"] == FOLDS
    assert list(summary["metrics"])[:2] == ["accuracy", "macro_f1"]
    assert "without_text.macro_f1" in summary["metrics"] and not any(k.startswith("latency.") for k in summary["metrics"])
    for key, stats in summary["metrics"].items():
        values = [numeric(fold)[key] for fold in summary["per_fold"]]
        assert stats["folds"] == values
        assert stats["mean"] == pytest.approx(np.mean(values)) and stats["std"] == pytest.approx(np.std(values, ddof=1))
    table = (paths.metrics / CV_MD).read_text()
    assert table == render_table(summary)
    row = next(line for line in table.splitlines() if line.startswith("| macro_f1 |"))
    m = summary["metrics"]["macro_f1"]
    assert f"{m['mean']:.3f} ± {m['std']:.3f}" in row and len(row.split("|")) == FOLDS + 4
    assert summary["identity"] == training_identity(params, paths.features)
    assert CV_SECTIONS == FINGERPRINT_SECTIONS  # the sections a resume state is tied to: the same ones


def test_parent_run_with_a_nested_run_per_fold(cv_run, mlflow_uri):
    from mlflow import MlflowClient

    summary, _ = cv_run
    client = MlflowClient(tracking_uri=mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("mmops").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("mmops.kind") == "cv"]
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mmops.kind") == "cv-fold"}
    assert parent.info.run_id == summary["mlflow_run_id"]
    assert sorted(children) == [f"fold-{k}" for k in range(1, FOLDS + 1)]
    assert {r.data.tags["mlflow.parentRunId"] for r in children.values()} == {parent.info.run_id}
    assert parent.data.metrics["macro_f1.std"] == pytest.approx(summary["metrics"]["macro_f1"]["std"])
    assert children["fold-2"].data.metrics["accuracy"] == pytest.approx(summary["per_fold"][1]["accuracy"])


def test_gate_refuses_a_std_above_its_ceiling(cv_run, animals):
    params, paths = animals
    summary, _ = cv_run
    identity = training_identity(params, paths.features)
    spread = json.loads(json.dumps(summary))
    spread["metrics"]["macro_f1"].update(folds=[0.9, 0.5, 0.7], mean=0.7, std=0.2)
    rule = CVGateRule(metric="macro_f1", min_mean=0.6, max_std=0.05)

    rules = {r.rule: r for r in cv_rules(rule, spread, identity)}
    assert rules["cv.mean.macro_f1"].passed and rules["cv.mean.macro_f1"].value == 0.7
    assert not rules["cv.std.macro_f1"].passed and rules["cv.std.macro_f1"].threshold == 0.05
    decision = decide({"accuracy": 0.9, "macro_f1": 0.9}, None, True, GateConfig(cv=rule), cv=list(rules.values()))
    assert not decision.promote and decision.failed() == ["cv.std.macro_f1"]

    spread["metrics"]["macro_f1"].update(folds=[0.71, 0.70, 0.69], std=0.01)
    assert all(r.passed for r in cv_rules(rule, spread, identity))
    # a report for other params or data, or none, is no evidence: the rule fails and says what to run
    other = training_identity(params.model_copy(update={"train": params.train.model_copy(update={"lr": 0.1})}),
                              paths.features)
    for report, why in ((spread, "for other params or data"), (None, "no cross-validation report")):
        (failed,) = cv_rules(rule, report, other if report else identity)
        assert not failed.passed and failed.rule == "cv.macro_f1" and why in failed.detail and "mmops cv" in failed.detail


def test_cli_names_the_missing_step(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mmops.cli import app

    monkeypatch.chdir(tmp_path)  # no params.yaml: the defaults

    result = CliRunner().invoke(app, ["cv", "--folds", "2", "--out", str(tmp_path / "cv"), "--no-mlflow",
                                      "--set", f"paths.features={tmp_path / 'none'}"])
    assert result.exit_code == 1 and "run `mmops preprocess`" in result.output and "Traceback" not in result.output
    assert "K-fold cross-validation" in CliRunner().invoke(app, ["cv", "--help"]).output
