"""`mmops` command line: one command per stage, plus `run` for the whole Prefect flow."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from mmops.atomic import atomic_write_json, atomic_write_text
from mmops.env import configure_tool_env
from mmops.errors import UserError
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


def _params(path: Path, overrides: list[str] | None, check_components: bool = True):
    from mmops.config import ConfigError
    from mmops.params_file import load_params

    try:
        return load_params(path if path.exists() or path != Path("params.yaml") else None, overrides, check_components)
    except ConfigError as err:
        _fail(str(err), 2)


def _stage_inputs(path: Path, overrides: list[str] | None, data: Path | None = None, check_components: bool = True):
    """(params, catalogue) of a stage command: `data` replaces `paths.data` when given."""
    from mmops.catalog import Catalog

    params = _params(path, overrides, check_components)
    return params, Catalog.from_paths(params.paths, data=data)


def _fail(message: str, code: int = 1) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _guard(fn):
    """Turn the errors a person can act on into a message and an exit code, not a traceback."""
    from mmops.config import ConfigError
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
    except (UserError, FileNotFoundError) as err:
        _fail(str(err), 1)


@app.command("demo-data")
def demo_data_cmd(
    out: Annotated[Optional[Path], typer.Option(help="output folder (default: paths.data)")] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Generate the built-in avdigits dataset (deterministic from demo.seed)."""
    from mmops import stages

    p, paths = _stage_inputs(params, set_, out)
    path = _guard(lambda: stages.demo_data(p, paths))
    console.print(f"demo dataset ready: {path}")


@app.command("validate")
def validate_cmd(
    data_dir: Annotated[Optional[Path], typer.Argument(help="dataset folder (default: paths.data)")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="report folder (default: paths.reports for the pipeline's dataset, else DATA_DIR.validation "
                      "beside DATA_DIR)")] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Validate a dataset (Great Expectations + media checks); non-zero exit on any error."""
    from dataclasses import replace

    from mmops import stages
    from mmops.validate import print_report

    p, paths = _stage_inputs(params, set_, data_dir, check_components=False)  # no model is built: no torch
    explicit = any(o.replace(" ", "").startswith("paths.reports=") for o in set_ or [])
    if out is None and not explicit and data_dir is not None and data_dir.resolve() != Path(p.paths.data).resolve():
        out = data_dir.resolve().parent / f"{data_dir.resolve().name}.validation"  # keep the pipeline's report (and dvc status) intact
    paths = replace(paths, reports=out) if out is not None else paths
    try:
        report = _guard(lambda: stages.validate(p, paths))
    finally:
        console.print(f"report in {paths.reports}")
    print_report(report, console)
    console.print("passed")


@app.command("profile")
def profile_cmd(
    data_dir: Annotated[Path, typer.Argument(help="dataset folder (manifest.csv or .parquet + media)")],
    out: Annotated[Path, typer.Option(help="folder for profile.md and profile.json")] = Path("reports/profile"),
    write: Annotated[
        Optional[Path], typer.Option("--write", help="also write a params file with every `auto` pinned to its value")
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """A dataset card without training: rows per split and class, modality coverage, media and text
    statistics, duplicates, imbalance, and the values `auto` would pick."""
    import yaml

    from mmops.data.manifest import read_manifest
    from mmops.data.profile import profile_dataset
    from mmops.data.splits import assign_splits
    from mmops.features.auto import resolve

    p = _params(params, set_)
    profile = _guard(lambda: profile_dataset(data_dir))
    resolved = _guard(lambda: resolve(
        p.classes, p.features, p.model, assign_splits(read_manifest(data_dir), p.seed), data_dir))
    out.mkdir(parents=True, exist_ok=True)
    auto = "\n".join(["## What `auto` picks", "", "| setting | value |", "| --- | --- |"]
                     + [f"| {k} | {v} |" for k, v in resolved.summary()])
    atomic_write_text(out / "profile.md", profile.markdown() + "\n" + auto + "\n")
    atomic_write_json(out / "profile.json",
                      {"profile": profile.model_dump(mode="json"), "auto": resolved.model_dump(mode="json")})
    table = Table(title=f"{data_dir}: {profile.n_rows} rows")
    table.add_column("item")
    table.add_column("value")
    table.add_row("classes", ", ".join(f"{c} ({n})" for c, n in list(profile.classes.items())[:12]))
    if profile.splits:
        table.add_row("splits", ", ".join(f"{s} ({n})" for s, n in profile.splits.items()))
    for m, cov in profile.modalities.items():
        table.add_row(f"{m} coverage", f"{cov.fraction:.0%}" if cov.column else "no column")
    for setting, value in resolved.summary():
        table.add_row(f"auto: {setting}", value)
    for warning in profile.warnings:
        table.add_row("warning", warning)
    Console().print(table)
    console.print(f"profile written to {out / 'profile.md'} and {out / 'profile.json'}")
    if write is not None:
        pinned = resolved.apply(p).model_copy(update={"paths": p.paths.model_copy(update={"data": data_dir})})
        atomic_write_text(write, yaml.safe_dump(pinned.dump(), sort_keys=False))
        console.print(f"params with `auto` pinned written to {write}")


@app.command("preprocess")
def preprocess_cmd(
    data: DataOpt = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    workers: Annotated[Optional[int], typer.Option(
        "--workers", "-w", min=1,
        help="featurizing processes, one shard each at a time (features.store.workers; default auto: the CPU "
             "count, at most one per shard). The shards' bytes do not depend on it. `mmops run` featurizes on "
             "Dask instead: a local cluster of as many processes, or features.store.dask_address",
    )] = None,
) -> None:
    """Featurize a validated dataset (tokenize, image transforms, log-mels) into shards of about
    features.store.shard_mb, in parallel over local processes."""
    from mmops import stages

    overrides = [*(set_ or []), *([f"features.store.workers={workers}"] if workers is not None else [])]
    p, paths = _stage_inputs(params, overrides, data)
    resolved = _guard(lambda: stages.preprocess(p, paths))
    for setting, value in resolved.summary():
        console.print(f"{setting}: {value}")
    console.print(f"features written to {paths.features} (what `auto` became: {paths.resolved})")


@app.command("train")
def train_cmd(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the last epoch checkpoint (last.pt)")] = False,
) -> None:
    """Train the fusion model (CUDA + mixed precision when present; DDP under torchrun)."""
    from mmops import stages

    p, paths = _stage_inputs(params, set_)
    out = _guard(lambda: stages.train(p, paths, resume=resume))
    console.print(f"checkpoint written to {out}")


@app.command("evaluate")
def evaluate_cmd(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Evaluate on the test split, whole and with each modality removed."""
    from mmops import stages

    p, paths = _stage_inputs(params, set_)
    metrics = _guard(lambda: stages.evaluate(p, paths))
    print(json.dumps(metrics, indent=2))


@app.command("register")
def register_cmd(data: DataOpt = None, params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Register the model as `challenger`; promote to `champion` if the gate passes."""
    from mmops import stages

    p, paths = _stage_inputs(params, set_, data)
    result = _guard(lambda: stages.register(p, paths))
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
    """One line per alias moved: `rolled back: champion_int8 (unset) -> v2 (#7, erin@ops)`."""
    for e in result.events:
        was, now = f"v{e.from_version}" if e.from_version else "(unset)", f"v{e.to_version}" if e.to_version else "(removed)"
        console.print(f"{verb}: {e.alias} {was} -> {now} (#{e.seq}, {e.actor})", soft_wrap=True)
    pinned = [e for e in result.events if e.pinned]
    if pinned:
        console.print(f"champion pinned to v{pinned[0].to_version}: automatic promotion is suspended until "
                      "`mmops release --reason ...`", soft_wrap=True)


@app.command("promote")
def promote_cmd(
    version: Annotated[str, typer.Argument(help="model version to make champion")],
    reason: ReasonOpt,
    expect: Annotated[Optional[str], typer.Option(
        "--expect-champion", help="compare-and-set: refuse unless the champion is still this version")] = None,
    force: Annotated[bool, typer.Option("--force", help="promote a version the gate rejected")] = False,
    no_pin: Annotated[bool, typer.Option(
        "--no-pin", help="do not pin: automatic promotion continues (an existing pin is lifted)")] = False,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Point `champion` at VERSION (its int8 variant follows as `champion_int8`); recorded in the history.

    Pins the champion (a human decision): automatic promotion waits for `mmops release`, unless --no-pin."""
    from mmops.registry.promotion import ANY_CHAMPION, promote

    client, name = _registry(params, set_)
    _print_move(_guard(lambda: promote(client, name, version, reason, expect or ANY_CHAMPION, force, pin=not no_pin)),
                "promoted")


@app.command("rollback")
def rollback_cmd(
    reason: ReasonOpt,
    to: Annotated[Optional[str], typer.Option("--to", help="version to roll back to (default: the previous champion)")] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Point `champion` back at the previous champion from the history (or --to VERSION); pins it
    (automatic promotion waits for `mmops release`)."""
    from mmops.registry.promotion import rollback

    client, name = _registry(params, set_)
    _print_move(_guard(lambda: rollback(client, name, reason, to)), "rolled back")


@app.command("release")
def release_cmd(reason: ReasonOpt, params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Remove the pin a manual promote or rollback put on `champion`: automatic promotion resumes."""
    from mmops.registry.promotion import release

    client, name = _registry(params, set_)
    event = _guard(lambda: release(client, name, reason))
    console.print(f"released: champion v{event.to_version} is no longer pinned; the next registration that "
                  f"passes the gate is promoted automatically (#{event.seq}, {event.actor})", soft_wrap=True)


@app.command("history")
def history_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="print the events as JSON")] = False,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Every alias move of the registered model: time, actor, reason, from -> to, rule results."""
    from mmops.registry.promotion import history_table, read_history, read_pin

    client, name = _registry(params, set_)
    events = read_history(client, name)
    if as_json:
        print(json.dumps([e.model_dump() for e in events], indent=2))
    else:
        Console().print(history_table(name, events, read_pin(client, name)))


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
    from mmops.experiments.ablation import ablate, default_variants, render_table

    p, paths = _stage_inputs(params, set_)
    results = _guard(lambda: ablate(p, paths, out, default_variants(p, fusion), log_to_mlflow=mlflow))
    Console().print(render_table(results))
    console.print(f"table written to {out / 'ablation.md'}")


@app.command("run")
def run_cmd(
    data: DataOpt = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    force: Annotated[bool, typer.Option("--force", help="rerun every stage, ignoring what is up to date")] = False,
) -> None:
    """Run the whole pipeline as a Prefect flow (demo data when --data is not given); up-to-date stages are reused.

    When every stage is up to date and no Prefect server is configured (PREFECT_API_URL), nothing
    starts: the check (dvc.lock in a DVC project, stamps otherwise) and the last result are printed."""
    params_path = str(params) if params.exists() else None
    if not force and _nothing_to_run(_params(params, set_, check_components=False), params_path, list(set_ or []), data):
        return
    from mmops.orchestrate.retrain import RegistryUnavailable, retrain

    _params(params, set_)  # fail fast on bad params, before Prefect starts
    try:
        result = _guard(
            lambda: retrain(params_path=params_path, overrides=list(set_ or []),
                            data_dir=str(data) if data else None, force=force)
        )
    except RegistryUnavailable as err:  # retried already; the message names the server and attempts
        _fail(str(err), 1)
    print_summary(result["registry"], result["metrics"], result.get("resolved"))


def _nothing_to_run(p, params_path: str | None, overrides: list[str], data: Path | None) -> bool:
    """Print the last result and return True when every stage is up to date and no server wants a
    record of the check; else say which stage must run and return False."""
    import os

    from mmops.catalog import Catalog
    from mmops.orchestrate.uptodate import check, run_summary, with_registry_state

    paths = Catalog.from_paths(p.paths, data=data)
    try:
        found = check(p, paths, params_path, overrides, data)
    except Exception as err:  # noqa: BLE001 - the flow decides again, stage by stage, and reports properly
        console.print(f"could not check whether the pipeline is up to date ({type(err).__name__}: {err}); running it",
                      soft_wrap=True)
        return False
    if not found.up_to_date:
        (stage, why), = found.stale.items()
        console.print(f"{stage} must run: {why}", soft_wrap=True, markup=False)
        return False
    console.print(f"up to date: every stage's last result still stands ({found.record}, checked in "
                  f"{found.seconds:.2f} s); nothing ran", soft_wrap=True)
    if os.environ.get("PREFECT_API_URL"):
        return False  # the flow records the check as a run whose stages are all `Cached`
    result = run_summary(paths, json.loads(paths.metrics_json.read_text()),
                         with_registry_state(json.loads(paths.registry_json.read_text())))
    print_summary(result["registry"], result["metrics"], result.get("resolved"))
    return True


@app.command("schedule")
def schedule_cmd(
    data: DataOpt = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    port: Annotated[int, typer.Option(help="port of the Prefect server started here (when PREFECT_API_URL is unset)")] = 4200,
) -> None:
    """Run the schedule locally until Ctrl-C: Prefect server (if none is configured), work pool, deployments, worker."""
    from mmops.orchestrate.local import run_scheduler

    _params(params, set_)
    _guard(lambda: run_scheduler(str(params) if params.exists() else None, list(set_ or []),
                                 str(data) if data else None, port=port))


def _serving_commands() -> None:
    from mmops.cli.serve import predict_command, serve_command

    app.command("serve")(serve_command)
    app.command("predict")(predict_command)


def _operator_commands() -> None:
    from mmops.cli.maintenance import gc_command
    from mmops.cli.tools import env_command, ui_command

    app.command("gc")(gc_command)
    app.command("env")(env_command)
    app.command("ui")(ui_command)


_operator_commands()


def _modules_with_commands() -> None:
    """Modules that add their commands to `app` when imported (they import `app` from here)."""
    from mmops.cli import experiments, monitor  # noqa: F401  mmops cv, mmops tune; mmops monitor


_modules_with_commands()


_serving_commands()


def print_summary(registry: dict, metrics: dict | None, resolved: list[tuple[str, str]] | None = None) -> None:
    """The run's result: a two-column table whose values fold (never `…`), then how to browse MLflow."""
    table = Table(title=f"{registry['model_name']} v{registry['version']}")
    table.add_column("item", no_wrap=True)
    table.add_column("value", overflow="fold")
    for setting, value in resolved or []:  # what `auto` became on this data
        table.add_row(f"data: {setting}", value)
    if metrics:
        for key, value in flatten(metrics).items():
            if key.startswith("latency") or not isinstance(value, (int, float)):
                continue
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    decision = registry["decision"]
    for rule in decision["rules"]:
        table.add_row(f"gate: {rule['rule']}", f"{'pass' if rule['passed'] else 'FAIL'} ({rule['value']} vs {rule['threshold']})")
    table.add_row("decision", _verdict(registry))
    if registry.get("reused"):
        table.add_row("registration", f"reused v{registry['version']} (same model content); no new version")
    pin = registry.get("pin")
    if pin:
        table.add_row("pin", f"champion pinned to v{pin['version']} by {pin['actor']} at "
                      f"{pin['time'].replace('T', ' ')[:19]}: {pin['reason']}; `mmops release` resumes "
                      "automatic promotion")
    for label, key, shown in (
        ("int8 variant", "quantized", (("accuracy drop", "accuracy_drop", "{:+.4f}"), ("size", "size_ratio", "x{:.2f}"),
                                       ("latency", "latency_ratio", "x{:.2f}"))),
        ("onnx variant", "onnx", (("max |Δp|", "max_abs_diff_probs", "{:.1e}"), ("size", "size_ratio", "x{:.2f}"),
                                  ("latency", "latency_ratio", "x{:.2f}"))),
        ("distilled variant", "distilled", (("accuracy drop", "accuracy_drop", "{:+.4f}"), ("size", "size_ratio", "x{:.2f}"),
                                            ("latency", "latency_ratio", "x{:.2f}"))),
        ("pruned variant", "pruned", (("accuracy drop", "accuracy_drop", "{:+.4f}"), ("size", "size_ratio", "x{:.2f}"),
                                      ("gzipped", "gzip_ratio", "x{:.2f}"), ("latency", "latency_ratio", "x{:.2f}"))),
    ):
        if registry.get(key):
            table.add_row(label, _variant(registry[key], shown))
    table.add_row("MLflow store", registry["tracking_uri"])
    out = Console()
    out.print(table)
    uri = registry["tracking_uri"]
    out.print("Open the MLflow UI: mmops ui mlflow", soft_wrap=True)
    out.print(f"  or: mlflow ui --backend-store-uri {uri} --port 5000", soft_wrap=True)
    out.print("  then http://127.0.0.1:5000", soft_wrap=True)


def _variant(variant: dict, shown: tuple[tuple[str, str, str], ...]) -> str:
    """A compressed or exported variant in one line: registered or not, and its measured ratios."""
    where = f"registered as v{variant['version']}" if variant["version"] else "not registered"
    numbers = [f"{label} {fmt.format(variant[key])}" for label, key, fmt in shown if variant.get(key) is not None]
    if variant.get("error"):
        numbers.append(f"export failed: {variant['error'][:120]}")
    return f"{where} ({', '.join(numbers)})" if numbers else where


def _verdict(registry: dict) -> str:
    champion, version = registry.get("champion_version"), str(registry["version"])
    stays = f"champion stays v{champion}" if champion else "no champion"
    if registry.get("held"):  # the `pin` row says by whom, when, why
        return f"would promote, but pinned; {stays}"
    if registry["promoted"]:
        if champion and str(champion) != version:  # a cached result: the champion moved since
            return f"promoted to champion then; the champion is now v{champion}"
        return "promoted to champion"
    if champion == version:
        return "already the champion"
    return f"not promoted; {stays}"


def main() -> None:  # pragma: no cover - console script entry
    sys.exit(app())


if __name__ == "__main__":
    app()
