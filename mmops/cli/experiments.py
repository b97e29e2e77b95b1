"""`mmops cv` (k-fold cross-validation) and `mmops tune` (Optuna search): experiments on the featurized splits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from mmops.cli import ParamsOpt, SetOpt, _guard, _stage_inputs, app, console

MlflowOpt = Annotated[bool, typer.Option(help="log a parent MLflow run with a nested run per fold / trial")]


@app.command("cv")
def cv_command(
    folds: Annotated[Optional[int], typer.Option("--folds", "-k", min=2, help="K (default: cv.folds in params)")] = None,
    out: Annotated[Path, typer.Option(help="folder for the fold splits and the fold models")] = Path("artifacts/cv"),
    mlflow: MlflowOpt = True,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """K-fold cross-validation (stratified, seeded) on the featurized train split: every metric as mean ± std
    and per fold (run preprocess first). Each fold selects its epoch on the val split; the test split is
    not used. Writes cv.md and cv.json (read by the gate's `gate.cv` rule) to paths.metrics."""
    from mmops.experiments.cv import CV_MD, cross_validate

    p, paths = _stage_inputs(params, set_)
    summary = _guard(lambda: cross_validate(p, paths, out, folds, log_to_mlflow=mlflow))
    k = summary["folds"]
    table = Table(title=f"{k}-fold cross-validation ({sum(summary['fold_rows'])} train rows, seed {summary['seed']})")
    table.add_column("metric", no_wrap=True)
    table.add_column("mean ± std", justify="right")
    for i in range(1, k + 1):
        table.add_column(f"fold {i}", justify="right")
    for key, s in summary["metrics"].items():
        table.add_row(key, f"{s['mean']:.4f} ± {s['std']:.4f}", *(f"{v:.4f}" for v in s["folds"]))
    Console().print(table)
    console.print(f"table: {paths.metrics / CV_MD}; fold models: {out}"
                  + (f"; MLflow run {summary['mlflow_run_id']}" if "mlflow_run_id" in summary else ""), soft_wrap=True)


@app.command("tune")
def tune_command(
    trials: Annotated[Optional[int], typer.Option("--trials", "-n", min=1, help="trials, the params as given (trial 0) "
                                                  "included (default: tune.trials in params)")] = None,
    out: Annotated[Path, typer.Option(help="folder for best.yaml, the trials table and the trial models")] = Path(
        "artifacts/tune"),
    mlflow: MlflowOpt = True,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Hyperparameter search (Optuna: seeded TPE, median pruning) over `tune.space` in params, scored by
    validation macro-F1 (run preprocess first). Writes best.yaml, a params file to `mmops run --params`."""
    from mmops.experiments.tune import BEST_YAML, OBJECTIVE, TRIALS_MD, cell, tune

    p, paths = _stage_inputs(params, set_)
    summary = _guard(lambda: tune(p, paths, out, trials, log_to_mlflow=mlflow))
    keys = list(summary["defaults"]["params"])
    table = Table(title=f"{len(summary['trials'])} trials, seed {summary['seed']}")
    for column in ("trial", "state", OBJECTIVE, "epochs", *keys):
        table.add_column(column, overflow="fold")
    for r in summary["trials"]:
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        table.add_row(str(r["number"]), r["state"], value, str(r["epochs"]), *(cell(r["params"].get(k)) for k in keys))
    Console().print(table)
    best, default = summary["best"], summary["defaults"]["value"]
    console.print(f"best: trial {best['number']}, {OBJECTIVE} {best['value']:.4f} (params as given, trial 0: "
                  f"{default:.4f}) {best['params']}", soft_wrap=True)
    console.print(f"run it: mmops run --params {out / BEST_YAML}   (trials: {out / TRIALS_MD})", soft_wrap=True)
