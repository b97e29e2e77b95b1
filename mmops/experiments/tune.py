"""Hyperparameter search with Optuna over `tune.space` (dotted params keys), on the featurized splits.

Each trial trains on `train` and is scored by its best validation macro-F1 (the number `mmops
train` selects its epoch by); the test split is never read. Trial 0 runs the params as given
(`enqueue_trial`), so the best trial is at least as good as the defaults by construction. The
sampler (TPE) is seeded with params `seed` and every trial's training is seeded alike: the same
seed gives the same trials and values. A median pruner stops a trial whose per-epoch validation
macro-F1 falls below the median of earlier trials at the same epoch.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mmops.atomic import atomic_write_json, atomic_write_text
from mmops.catalog import Catalog
from mmops.config import ConfigError, Params
from mmops.config.experiments import Dimension
from mmops.errors import UserError
from mmops.train.recipe import TrainRecipe, console

OBJECTIVE = "val_macro_f1"
BEST_YAML = "best.yaml"
TRIALS_MD = "trials.md"
TRIALS_CSV = "trials.csv"
TUNE_JSON = "tune.json"


def with_values(params: Params, values: dict[str, Any]) -> Params:
    """`params` with each dotted key set to its value (a ConfigError names a key that is not a param)."""
    raw = params.dump()
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = raw
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or (leaf not in node and parents[-1:] != ["options"]):
            raise ConfigError(f"tune.space: {key!r} is not a params key")
        node[leaf] = value
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"tune.space values {values} make invalid params:\n{err}") from None


def current_values(params: Params, space: dict[str, Dimension]) -> dict[str, Any]:
    """Each searched key's value in `params` (trial 0); a UserError names a value outside its range."""
    values = {}
    for key, dim in space.items():
        node: Any = params.dump()
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"tune.space: {key!r} is not a params key")
            node = node[part]
        if not dim.contains(node):
            raise UserError(f"tune.space {key}: the current value {node!r} is not in {dim.model_dump()} "
                            f"(trial 0 runs the params as given): widen the range or add it to the choices")
        values[key] = node
    return values


def suggest(trial, key: str, dim: Dimension) -> Any:
    if dim.categorical is not None:
        return trial.suggest_categorical(key, dim.categorical)
    if dim.int_ is not None:
        return trial.suggest_int(key, *dim.int_)
    low, high = dim.loguniform or dim.uniform
    return trial.suggest_float(key, low, high, log=dim.loguniform is not None)


class TrialRecipe(TrainRecipe):
    """The training recipe reporting each epoch's validation macro-F1 to an Optuna trial, and
    stopping when the pruner says so."""

    def __init__(self, params: Params, paths: Catalog, trial, mlflow=None) -> None:
        super().__init__(params, paths)
        self.trial, self.mlflow, self.pruned = trial, mlflow, False

    def epoch_done(self, row: dict) -> bool:
        self.trial.report(row[OBJECTIVE], row["epoch"])
        if self.mlflow is not None:
            self.mlflow.log_metric(OBJECTIVE, row[OBJECTIVE], step=row["epoch"])
        self.pruned = self.trial.should_prune()
        if self.pruned:
            console.print(f"trial {self.trial.number} pruned after epoch {row['epoch']} (below the median of earlier trials)")
        return self.pruned


def tune(
    params: Params, paths: Catalog, out_dir: Path, trials: int | None = None, log_to_mlflow: bool = True
) -> dict:
    """Run the study (trial models under `out_dir/trial-<n>`); write `best.yaml` (the full params with
    the best values), `trials.md`, `trials.csv` and `tune.json` to `out_dir`; log a parent MLflow
    run `tune` with one nested run per trial unless disabled. Returns the summary."""
    import optuna

    from mmops import stages

    cfg = params.tune
    trials = trials or cfg.trials
    space = cfg.dimensions()
    defaults = current_values(params, space)
    out_dir = Path(out_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=params.seed, n_startup_trials=cfg.startup_trials),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=cfg.prune_after_trials,
                                           n_warmup_steps=cfg.prune_warmup_epochs),
    )
    study.enqueue_trial(defaults)
    mlflow = _mlflow(params) if log_to_mlflow else None

    def objective(trial) -> float:
        values = {key: suggest(trial, key, dim) for key, dim in space.items()}
        trial_paths = replace(paths, model=out_dir / f"trial-{trial.number}" / "model")
        started = time.perf_counter()
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True) if mlflow else nullcontext():
            if mlflow:
                mlflow.set_tag("mmops.kind", "tune-trial")
                mlflow.log_params(values)
            recipe = TrialRecipe(stages.resolved(with_values(params, values), paths), trial_paths, trial, mlflow)
            recipe.setup()
            summary = recipe.train()
            recipe.finish(summary)
            trial.set_user_attr("epochs", summary["epochs_run"])
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
            if mlflow:
                mlflow.set_tag("optuna.state", "pruned" if recipe.pruned else "complete")
                mlflow.log_metric(f"best_{OBJECTIVE}", summary["best_val_macro_f1"])
        console.print(f"trial {trial.number}: {values} -> best {OBJECTIVE} {summary['best_val_macro_f1']:.4f}"
                      f"{' (pruned)' if recipe.pruned else ''}", soft_wrap=True)
        if recipe.pruned:
            raise optuna.TrialPruned()
        return summary["best_val_macro_f1"]

    with mlflow.start_run(run_name=f"tune-{trials}-trials") if mlflow else nullcontext() as parent:
        if mlflow:
            mlflow.set_tag("mmops.kind", "tune")
            mlflow.log_params({"trials": trials, "seed": params.seed,
                               "space": json.dumps({k: d.model_dump() for k, d in space.items()})})
        study.optimize(objective, n_trials=trials)
        summary = summarize(study, defaults, params.seed)
        best_params = with_values(params, summary["best"]["params"])
        write_outputs(out_dir, summary, best_params)
        if mlflow:
            mlflow.log_metric(f"best_{OBJECTIVE}", summary["best"]["value"])
            mlflow.log_params({f"best.{k}": v for k, v in summary["best"]["params"].items()})
            for name in (BEST_YAML, TRIALS_MD, TRIALS_CSV):
                mlflow.log_artifact(str(out_dir / name))
            summary["mlflow_run_id"] = parent.info.run_id
    return summary


def _mlflow(params: Params):
    from mmops.registry.tracking import setup_mlflow

    return setup_mlflow(params.registry.experiment)


def summarize(study, defaults: dict[str, Any], seed: int) -> dict:
    """Every trial (number, state, value, params, epochs, seconds), the best one, trial 0's value and
    the params' importances (fANOVA, seeded; None when fewer than two trials finished)."""
    import optuna

    rows = [
        {"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params,
         "epochs": t.user_attrs.get("epochs"), "seconds": t.user_attrs.get("seconds")}
        for t in study.trials
    ]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        importance = optuna.importance.get_param_importances(study, evaluator=evaluator) if len(complete) > 1 else None
    except (RuntimeError, ValueError):  # e.g. every trial at the same value
        importance = None
    best = study.best_trial
    return {
        "objective": OBJECTIVE, "seed": seed, "defaults": {"params": defaults, "value": study.trials[0].value},
        "best": {"number": best.number, "value": best.value, "params": best.params},
        "importance": importance, "trials": rows,
    }


def write_outputs(out_dir: Path, summary: dict, best_params: Params) -> None:
    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    best = summary["best"]
    header = (f"# written by `mmops tune`: best of {len(summary['trials'])} trials, trial {best['number']}, "
              f"{OBJECTIVE} {best['value']:.4f} (trial 0, the params as given: {summary['defaults']['value']:.4f})\n"
              f"# run it: mmops run --params {out_dir / BEST_YAML}\n")
    atomic_write_text(out_dir / BEST_YAML, header + yaml.safe_dump(best_params.dump(), sort_keys=False))
    flat = [{k: v for k, v in r.items() if k != "params"} | r["params"] for r in summary["trials"]]
    atomic_write_text(out_dir / TRIALS_CSV, pd.DataFrame(flat).to_csv(index=False))
    atomic_write_text(out_dir / TRIALS_MD, render_table(summary))
    atomic_write_json(out_dir / TUNE_JSON, summary)


def render_table(summary: dict) -> str:
    """Markdown: one row per trial (the best marked), then the importances."""
    keys = list(summary["defaults"]["params"])
    best = summary["best"]["number"]
    lines = [f"| trial | state | {OBJECTIVE} | epochs | seconds | " + " | ".join(keys) + " |",
             "|" + " --- |" * (len(keys) + 5)]
    for r in summary["trials"]:
        value = "" if r["value"] is None else f"{r['value']:.4f}" + (" **best**" if r["number"] == best else "")
        cells = [cell(r["params"].get(k)) for k in keys]
        lines.append(f"| {r['number']} | {r['state']} | {value} | {r['epochs']} | {r['seconds']} | " + " | ".join(cells) + " |")
    lines += ["", "Trial 0 runs the params as given; the best trial is at least as good by construction. "
                  "A pruned trial's value is the one at the epoch it was stopped."]
    if summary["importance"]:
        shares = ", ".join(f"`{k}` {v:.2f}" for k, v in summary["importance"].items())
        lines += ["", f"Importance (fANOVA over the finished trials): {shares}."]
    return "\n".join(lines) + "\n"


def cell(value: Any) -> str:
    """A param value for a table: floats to 3 significant digits."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)
