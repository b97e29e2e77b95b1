"""`mmops` command line: one command per stage, plus `run` for the whole Prefect flow."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from mmops.env import configure_tool_env
from mmops.flatten import flatten

configure_tool_env()

app = typer.Typer(
    help="mmops: validate -> preprocess -> train -> evaluate -> register -> gate, for multimodal classifiers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params file; defaults apply if it is absent")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="override a param: section.key=value")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", "-d", help="dataset folder (default: paths.data)")]


def _params(path: Path, overrides: list[str] | None):
    from mmops.config import ConfigError, load_params

    try:
        return load_params(path if path.exists() or path != Path("params.yaml") else None, overrides)
    except ConfigError as err:
        _fail(str(err), 2)


def _fail(message: str, code: int = 1) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _guard(fn):
    """Turn the errors a person can act on into a message and an exit code, not a traceback."""
    from mmops.config import ConfigError
    from mmops.features.preprocess import NotValidatedError
    from mmops.registry.gate import UnknownMetricError
    from mmops.registry.promotion import PromotionError
    from mmops.registry.register import RegistrationRefused
    from mmops.stages import DataValidationError

    try:
        return fn()
    except ConfigError as err:
        _fail(str(err), 2)
    except DataValidationError as err:
        if err.report is not None:
            from mmops.validate import print_report

            print_report(err.report, console)
        _fail(str(err), 1)
    except (NotValidatedError, RegistrationRefused, FileNotFoundError, UnknownMetricError, PromotionError) as err:
        _fail(str(err), 1)


@app.command("demo-data")
def demo_data_cmd(
    out: Annotated[Optional[Path], typer.Option(help="output folder (default: paths.data)")] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Generate the built-in avdigits dataset (deterministic from demo.seed)."""
    from mmops import stages

    p = _params(params, set_)
    path = _guard(lambda: stages.demo_data(p, out))
    console.print(f"demo dataset ready: {path}")


@app.command("validate")
def validate_cmd(
    data_dir: Annotated[Optional[Path], typer.Argument(help="dataset folder (default: paths.data)")] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Validate a dataset (Great Expectations + media checks); non-zero exit on any error."""
    from mmops import stages
    from mmops.validate import print_report

    p = _params(params, set_)
    report = _guard(lambda: stages.validate(p, data_dir))
    print_report(report, console)
    console.print(f"passed; report in {stages.validation_json(p).parent}")


@app.command("preprocess")
def preprocess_cmd(data: DataOpt = None, params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Featurize a validated dataset (tokenize, image transforms, log-mels), cached by content."""
    from mmops import stages

    p = _params(params, set_)
    out = _guard(lambda: stages.preprocess(p, data))
    console.print(f"features written to {out}")


@app.command("train")
def train_cmd(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the last epoch checkpoint (last.pt)")] = False,
) -> None:
    """Train the fusion model (CUDA + mixed precision when present; DDP under torchrun)."""
    from mmops import stages

    p = _params(params, set_)
    out = _guard(lambda: stages.train(p, resume=resume))
    console.print(f"checkpoint written to {out}")


@app.command("evaluate")
def evaluate_cmd(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Evaluate on the test split, whole and with each modality removed."""
    from mmops import stages

    p = _params(params, set_)
    metrics = _guard(lambda: stages.evaluate(p))
    print(json.dumps(metrics, indent=2))


@app.command("register")
def register_cmd(data: DataOpt = None, params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Register the model as `challenger`; promote to `champion` if the gate passes."""
    from mmops import stages

    p = _params(params, set_)
    result = _guard(lambda: stages.register(p, data))
    print_summary(result, None)


ReasonOpt = Annotated[str, typer.Option("--reason", "-r", help="why; recorded in the registry's history")]


def _registry(params: Path, overrides: list[str] | None):
    """(MlflowClient on MLFLOW_TRACKING_URI or the project store, registered model name)."""
    import mlflow

    from mmops.registry.tracking import tracking_uri

    p = _params(params, overrides)
    mlflow.set_tracking_uri(tracking_uri())
    return mlflow.MlflowClient(), p.registry.model_name


def _print_move(result, verb: str) -> None:
    for e in result.events:
        console.print(f"{verb}: {e.alias} v{e.from_version or '-'} -> {'v' + e.to_version if e.to_version else '(removed)'}"
                      f" (#{e.seq}, {e.actor})")


@app.command("promote")
def promote_cmd(
    version: Annotated[str, typer.Argument(help="model version to make champion")],
    reason: ReasonOpt,
    expect: Annotated[Optional[str], typer.Option(
        "--expect-champion", help="compare-and-set: refuse unless the champion is still this version")] = None,
    force: Annotated[bool, typer.Option("--force", help="promote a version the gate rejected")] = False,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Point `champion` at VERSION (its int8 variant follows as `champion_int8`); recorded in the history."""
    from mmops.registry.promotion import ANY_CHAMPION, promote

    client, name = _registry(params, set_)
    _print_move(_guard(lambda: promote(client, name, version, reason, expect or ANY_CHAMPION, force)), "promoted")


@app.command("rollback")
def rollback_cmd(
    reason: ReasonOpt,
    to: Annotated[Optional[str], typer.Option("--to", help="version to roll back to (default: the previous champion)")] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Point `champion` back at the previous champion from the history (or --to VERSION)."""
    from mmops.registry.promotion import rollback

    client, name = _registry(params, set_)
    _print_move(_guard(lambda: rollback(client, name, reason, to)), "rolled back")


@app.command("history")
def history_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="print the events as JSON")] = False,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Every alias move of the registered model: time, actor, reason, from -> to, rule results."""
    from mmops.registry.promotion import history_table, read_history

    client, name = _registry(params, set_)
    events = read_history(client, name)
    if as_json:
        print(json.dumps([e.model_dump() for e in events], indent=2))
    else:
        Console().print(history_table(name, events))


@app.command("ablate")
def ablate_cmd(
    out: Annotated[Path, typer.Option(help="output folder for models and the table")] = Path("artifacts/ablation"),
    fusion: Annotated[
        Optional[list[str]], typer.Option(help="fusions to compare (repeatable; default: every registered one)")
    ] = None,
    mlflow: Annotated[bool, typer.Option(help="log a run per variant and the table to MLflow")] = True,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Train and evaluate each single modality and each fusion on the same splits (run preprocess first)."""
    from mmops.evaluate.ablation import ablate, default_variants, render_table

    p = _params(params, set_)
    results = _guard(lambda: ablate(p, out, default_variants(p, fusion), log_to_mlflow=mlflow))
    Console().print(render_table(results))
    console.print(f"table written to {out / 'ablation.md'}")


@app.command("run")
def run_cmd(
    data: DataOpt = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    force: Annotated[bool, typer.Option("--force", help="rerun every stage, ignoring the content-hash cache")] = False,
) -> None:
    """Run the whole pipeline as a Prefect flow (demo data when --data is not given); unchanged stages are cached."""
    from flows.retrain import RegistryUnavailable, retrain

    _params(params, set_)  # fail fast on bad params, before Prefect starts
    try:
        result = _guard(
            lambda: retrain(
                params_path=str(params) if params.exists() else None,
                overrides=list(set_ or []),
                data_dir=str(data) if data else None,
                force=force,
            )
        )
    except RegistryUnavailable as err:  # retried already; the message names the server and attempts
        _fail(str(err), 1)
    print_summary(result["registry"], result["metrics"])


@app.command("schedule")
def schedule_cmd(
    data: DataOpt = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    port: Annotated[int, typer.Option(help="port of the Prefect server started here (when PREFECT_API_URL is unset)")] = 4200,
) -> None:
    """Run the schedule locally until Ctrl-C: Prefect server (if none is configured), work pool, deployments, worker."""
    from flows.local import run_scheduler

    _params(params, set_)
    _guard(lambda: run_scheduler(str(params) if params.exists() else None, list(set_ or []),
                                 str(data) if data else None, port=port))


def _serving_commands() -> None:
    from mmops.serve.cli import predict_command, serve_command

    app.command("serve")(serve_command)
    app.command("predict")(predict_command)


_serving_commands()


def print_summary(registry: dict, metrics: dict | None) -> None:
    table = Table(title=f"{registry['model_name']} v{registry['version']}")
    table.add_column("item")
    table.add_column("value")
    if metrics:
        for key, value in flatten(metrics).items():
            if key.startswith("latency") or not isinstance(value, (int, float)):
                continue
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    decision = registry["decision"]
    for rule in decision["rules"]:
        table.add_row(f"gate: {rule['rule']}", f"{'pass' if rule['passed'] else 'FAIL'} ({rule['value']} vs {rule['threshold']})")
    verdict = "promoted to champion" if registry["promoted"] else f"not promoted; champion stays v{registry['champion_version']}"
    table.add_row("decision", verdict)
    quant = registry.get("quantized")
    if quant:
        where = f"registered as v{quant['version']}" if quant["version"] else "not registered"
        table.add_row("int8 variant", f"{where} (accuracy drop {quant['accuracy_drop']:+.4f}, size x{quant['size_ratio']:.2f}, "
                      f"latency x{quant['latency_ratio']:.2f})")
    table.add_row("MLflow store", registry["tracking_uri"])
    Console().print(table)
    uri = registry["tracking_uri"]
    Console().print(f"Open the MLflow UI: mlflow ui --backend-store-uri {uri} --port 5000  (then http://127.0.0.1:5000)")


def main() -> None:  # pragma: no cover - console script entry
    sys.exit(app())


if __name__ == "__main__":
    app()
