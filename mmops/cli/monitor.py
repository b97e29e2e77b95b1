"""`mmops monitor`: drift of the prediction log against the model's training reference (arguments and
printing only; the check is `mmops.orchestrate.monitor.run_monitor`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from mmops.cli import ParamsOpt, SetOpt, _fail, _guard, _params, app, console

UNITS = {"m": 1.0, "h": 60.0, "d": 1440.0}


def window_minutes(text: str | None) -> float | None:
    """`90m`, `2h`, `1.5d` -> minutes; None stays None."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhd])\s*", text)
    if not match or float(match[1]) <= 0:
        raise typer.BadParameter(f"{text!r}: expected a positive duration with a unit, e.g. 30m, 2h or 1d")
    return float(match[1]) * UNITS[match[2]]


@app.command("monitor")
def monitor_command(
    window: Annotated[Optional[str], typer.Option(
        "--window", "-w", help="only predictions of this last period: 30m, 2h, 1d (default: monitor.drift.minutes)")] = None,
    last: Annotated[Optional[int], typer.Option(
        "--last", "-n", min=1, help="only the last N predictions (default: monitor.drift.last)")] = None,
    model_version: Annotated[Optional[str], typer.Option(
        "--model-version", "-m", help="registered version to monitor (default: the champion)")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="folder for drift.json and drift.html (default: <paths.reports>/monitor)")] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Compare a window of the prediction log with the model's training reference: per-modality feature
    drift, predicted-label drift and live accuracy from the feedback. Writes drift.json and drift.html,
    logs them to MLflow against the model version, and says whether `monitor.trigger` would retrain."""
    from mmops.monitor.report import live_line, summary_rows, verdict
    from mmops.orchestrate.monitor import run_monitor

    p = _params(params, set_, check_components=False)
    minutes = window_minutes(window)
    target = out or Path(p.paths.reports) / "monitor"
    doc = _guard(lambda: run_monitor(p, target, model_version, last, minutes))
    if doc is None:
        _fail("the monitor did not run")
    table = Table(title=f"{doc['model_name']} v{doc['model_version']}: {doc['window']['n']} predictions")
    for column in ("check", "score", "drifted", "detail"):
        table.add_column(column, overflow="fold")
    for row in summary_rows(doc):
        style = "bold red" if row["drifted"] == "DRIFT" else None
        table.add_row(row["check"], row["score"], row["drifted"], row["detail"], style=style)
    Console().print(table)
    console.print(live_line(doc), soft_wrap=True)
    console.print(f"decision: {verdict(doc)}", soft_wrap=True, markup=False)
    console.print(f"report: {doc['outputs']['html']} and {doc['outputs']['json']} (copy: {doc['outputs']['log_copy']}); "
                  f"MLflow run {doc['outputs']['mlflow_run_id']}", soft_wrap=True, markup=False)
