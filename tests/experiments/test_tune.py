"""Hyperparameter search: seeded and reproducible, trial 0 = the params as given, a loadable best params file."""

import csv
import json

import pytest

from mmops.config import ConfigError
from mmops.config.experiments import Dimension, TuneConfig
from mmops.errors import UserError
from mmops.experiments.tune import (
    BEST_YAML,
    OBJECTIVE,
    TRIALS_CSV,
    TRIALS_MD,
    TUNE_JSON,
    TrialRecipe,
    current_values,
    tune,
    with_values,
)
from mmops.params_file import load_params

TRIALS = 3
SPACE = {
    "train.lr": {"loguniform": [1e-3, 3e-2]},
    "model.head.dropout": {"uniform": [0.0, 0.5]},
    "model.width": {"categorical": [8, 16]},
}


def _searching(params, seed: int):
    tune_cfg = TuneConfig(space=SPACE, startup_trials=2, prune_after_trials=1, prune_warmup_epochs=1)
    return params.model_copy(update={"seed": seed, "tune": tune_cfg})


@pytest.fixture(scope="module")
def studies(animals, tmp_path_factory, mlflow_uri):
    """The same study twice (seed 5), the first logged to MLflow."""
    params, paths = animals
    tmp = tmp_path_factory.mktemp("tune")
    uri = mlflow_uri
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        first = tune(_searching(params, 5), paths, tmp / "a", TRIALS)
    again = tune(_searching(params, 5), paths, tmp / "b", TRIALS, log_to_mlflow=False)
    return first, again, tmp, uri


def test_same_seed_same_trials_and_values(studies):
    first, again, _, _ = studies
    assert len(first["trials"]) == TRIALS
    assert [(t["params"], t["value"], t["state"]) for t in first["trials"]] == \
        [(t["params"], t["value"], t["state"]) for t in again["trials"]]
    assert first["best"] == again["best"]
    assert len({json.dumps(t["params"], sort_keys=True) for t in first["trials"]}) == TRIALS  # sampled, not repeated


def test_trial_zero_runs_the_params_as_given_and_the_best_is_no_worse(studies, animals):
    params, _ = animals
    first = studies[0]
    assert first["trials"][0]["params"] == {"train.lr": params.train.lr, "model.head.dropout": params.model.head.dropout,
                                             "model.width": params.model.width}
    assert first["defaults"]["value"] == first["trials"][0]["value"] is not None
    finished = [t["value"] for t in first["trials"] if t["state"] == "complete"]
    assert first["best"]["value"] == max(finished) >= first["defaults"]["value"]


def test_writes_a_loadable_params_file_and_the_trials_table(studies, animals):
    params, _ = animals
    first, _, tmp, _ = studies
    out = tmp / "a"
    best = load_params(out / BEST_YAML)
    assert best.dump() == with_values(_searching(params, 5), first["best"]["params"]).dump()
    assert best.train.lr == first["best"]["params"]["train.lr"] and best.model.width == first["best"]["params"]["model.width"]
    assert (out / BEST_YAML).read_text().startswith("# written by `mmops tune`")
    rows = list(csv.DictReader((out / TRIALS_CSV).open()))
    assert [int(r["number"]) for r in rows] == list(range(TRIALS)) and float(rows[0]["train.lr"]) == params.train.lr
    table = (out / TRIALS_MD).read_text()
    assert sum(line.startswith("| ") for line in table.splitlines()) == TRIALS + 2 and "**best**" in table  # header, rule, trials
    assert json.loads((out / TUNE_JSON).read_text())["best"] == first["best"]


def test_each_trial_a_nested_mlflow_run(studies):
    from mlflow import MlflowClient

    first, _, _, uri = studies
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("mmops").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("mmops.kind") == "tune"]
    trials = {r.info.run_name: r for r in runs if r.data.tags.get("mmops.kind") == "tune-trial"}
    assert parent.info.run_id == first["mlflow_run_id"] and len(trials) == TRIALS
    assert {r.data.tags["mlflow.parentRunId"] for r in trials.values()} == {parent.info.run_id}
    assert parent.data.metrics[f"best_{OBJECTIVE}"] == pytest.approx(first["best"]["value"])
    trial0 = trials["trial-0"]
    assert float(trial0.data.params["train.lr"]) == first["trials"][0]["params"]["train.lr"]
    history = client.get_metric_history(trial0.info.run_id, OBJECTIVE)
    assert [m.step for m in history] == list(range(1, first["trials"][0]["epochs"] + 1))


class FakeTrial:
    number = 7

    def __init__(self, prune_at: int) -> None:
        self.prune_at, self.reported = prune_at, []

    def report(self, value: float, step: int) -> None:
        self.reported.append((step, value))

    def should_prune(self) -> bool:
        return len(self.reported) >= self.prune_at


def test_the_recipe_reports_every_epoch_and_stops_when_pruned(animals, tmp_path):
    from dataclasses import replace

    params, paths = animals
    params = params.model_copy(update={"train": params.train.model_copy(update={"epochs": 4})})
    trial = FakeTrial(prune_at=2)
    recipe = TrialRecipe(params, replace(paths, model=tmp_path / "model"), trial)
    recipe.setup()
    summary = recipe.train()
    recipe.finish(summary)
    assert recipe.pruned and summary["epochs_run"] == 2
    assert trial.reported == [(row["epoch"], row[OBJECTIVE]) for row in recipe.history]


def test_space_keys_and_ranges_are_checked(animals):
    params, _ = animals
    with pytest.raises(UserError, match=r"tune.space train.lr: the current value 0.005 is not in"):
        current_values(params, {"train.lr": Dimension(loguniform=(0.01, 0.1))})
    with pytest.raises(ConfigError, match="'train.learning_rate' is not a params key"):
        current_values(params, {"train.learning_rate": Dimension(uniform=(0.0, 1.0))})
    with pytest.raises(ConfigError, match="'model.hidth' is not a params key"):
        with_values(params, {"model.hidth": 3})
    with pytest.raises(ValueError, match="exactly one of"):
        Dimension(uniform=(0.0, 1.0), categorical=[1])
    assert Dimension(categorical=["auto", 16]).contains("auto") and not Dimension(int=(1, 3)).contains(2.0)


def test_a_given_space_replaces_the_default_one(tmp_path):
    (tmp_path / "params.yaml").write_text("tune:\n  space:\n    train.weight_decay: {loguniform: [1.0e-5, 1.0e-3]}\n")
    space = load_params(tmp_path / "params.yaml", check_components=False).tune.dimensions()
    assert list(space) == ["train.weight_decay"] and space["train.weight_decay"].kind == "loguniform"
    assert "train.lr" in load_params(None, check_components=False).tune.dimensions()


def test_cli_refuses_params_outside_the_space(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mmops.cli import app

    monkeypatch.chdir(tmp_path)  # no params.yaml: the defaults

    result = CliRunner().invoke(app, ["tune", "--no-mlflow", "--out", str(tmp_path / "t"), "--set", "train.lr=0.5",
                                      "--set", f"paths.features={tmp_path / 'none'}"])
    assert result.exit_code == 1 and "tune.space train.lr: the current value 0.5 is not in" in result.output
    assert not (tmp_path / "t").exists()
    assert "best.yaml" in CliRunner().invoke(app, ["tune", "--help"]).output
