"""`mmops serve` and `mmops predict`: arguments, tracking URI, progress and printing only
(wired into the main CLI as `app.command("serve")(serve_command)` and `app.command("predict")(predict_command)`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from mmops.atomic import atomic_path

console = Console(stderr=True)

LogDirOption = Annotated[
    Optional[str], typer.Option(help="prediction log folder, s3:// or postgresql:// URI (default: params monitor.log.dir)")
]
ParamsOption = Annotated[Path, typer.Option("--params", "-p", help="params file (default model name, monitor.log)")]


def _default_model_name(params: Path) -> str:
    from mmops.params_file import load_params

    return load_params(params if params.exists() else None, None).registry.model_name


def _log_config(params: Path, log_dir: str | None, no_log: bool):
    """Params `monitor.log` (without a params file: env MMOPS_SERVE_PREDICTION_LOG over the defaults),
    then --log-dir / --no-log."""
    from mmops.params_file import load_params
    from mmops.serve.settings import prediction_log_from_env

    if params.exists():
        config = load_params(params, None, check_components=False).monitor.log
    else:
        config = prediction_log_from_env()
    return config.model_copy(update={"dir": log_dir or config.dir, "enabled": config.enabled and not no_log})


def _log_line(config) -> str:
    from mmops.monitor.log import resolve_dir
    from mmops.monitor.pgstore import redact

    return f"prediction log: {redact(resolve_dir(config.dir))}" if config.enabled else "prediction log: off"


def _fail(message: str, code: int = 1) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def serve_command(
    host: Annotated[str, typer.Option(help="interface to bind (0.0.0.0 to expose it)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8080,
    model_name: Annotated[Optional[str], typer.Option(help="registered model (default: registry.model_name)")] = None,
    alias: Annotated[str, typer.Option(help="registry alias to serve and watch")] = "champion",
    backend: Annotated[
        str, typer.Option(help="torch: the model as registered; onnx: its ONNX variant, run by ONNX Runtime")
    ] = "torch",
    poll_interval: Annotated[Optional[float], typer.Option(help="seconds between champion checks; 0 = off [10]")] = None,
    max_batch_size: Annotated[Optional[int], typer.Option(help="rows per model call [32]")] = None,
    max_wait_ms: Annotated[Optional[float], typer.Option(help="how long a batch waits for more requests [5]")] = None,
    max_body_bytes: Annotated[Optional[int], typer.Option(help="request body cap in bytes [8 MiB]")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    access_log: Annotated[bool, typer.Option(help="log every request")] = False,
    ssl_certfile: Annotated[Optional[Path], typer.Option(help="TLS certificate chain (PEM): serve HTTPS only")] = None,
    ssl_keyfile: Annotated[Optional[Path], typer.Option(help="TLS private key (PEM) of --ssl-certfile")] = None,
    insecure_no_auth: Annotated[
        bool, typer.Option("--insecure-no-auth", help="allow a non-loopback --host without MMOPS_SERVE_TOKEN")
    ] = False,
    log_dir: LogDirOption = None,
    no_log: Annotated[
        bool, typer.Option("--no-log", help="log no predictions (POST /feedback then answers 409)")
    ] = False,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Serve `models:/NAME@ALIAS` over HTTP(S) (/predict, /health, /metadata, /metrics), hot-reloading it.

    Limits also come from env MMOPS_SERVE_* (e.g. MMOPS_SERVE_MAX_BODY_BYTES); MMOPS_SERVE_TOKEN
    (32+ characters) requires `Authorization: Bearer <token>` and is needed to bind anything but
    loopback. MLflow: MLFLOW_TRACKING_URI (and MLFLOW_TRACKING_USERNAME/PASSWORD with basic auth).
    Every prediction gets a request_id and is appended to the prediction log (params monitor.log:
    summary features, never raw media); POST /feedback takes true labels for those ids.
    """
    from mlflow.exceptions import MlflowException
    from pydantic import ValidationError

    from mmops.env import configure_tool_env
    from mmops.serve.app import serve
    from mmops.serve.auth import InsecureConfig, check_bind, check_tls
    from mmops.serve.reloader import NoOnnxVariant, RegistrySource
    from mmops.serve.settings import ServeSettings

    configure_tool_env()
    try:
        settings = ServeSettings.from_env(
            model_name=model_name or _default_model_name(params), alias=alias, backend=backend,
            poll_interval_s=poll_interval,
            max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, max_body_bytes=max_body_bytes,
            prediction_log=_log_config(params, log_dir, no_log),
        )
    except ValidationError as err:
        _fail(f"invalid serve settings: {err}", 2)
    certfile, keyfile = (str(f) if f else None for f in (ssl_certfile, ssl_keyfile))
    try:  # before the (slow) model resolution: a refused set-up should fail at once
        check_bind(host, settings.token, insecure_no_auth)
        check_tls(certfile, keyfile)
    except InsecureConfig as err:
        _fail(str(err), 2)
    source = RegistrySource(settings.model_name, settings.alias, backend=settings.backend)
    try:
        version = source.current_version()
        variant = f", ONNX variant v{source.onnx_version(version)}" if settings.backend == "onnx" else ""
    except MlflowException as err:
        _fail(f"cannot resolve models:/{settings.model_name}@{settings.alias} in {source.tracking_uri}: "
              f"{str(err).splitlines()[0]}")
    except NoOnnxVariant as err:
        _fail(str(err))
    scheme = "https" if certfile else "http"
    console.print(f"serving models:/{settings.model_name}@{settings.alias} (v{version}{variant}) on {scheme}://{host}:{port}"
                  + ("" if settings.token else " without a token"))
    console.print(_log_line(settings.prediction_log))
    serve(settings, host=host, port=port, log_level=log_level, access_log=access_log, source=source,
          ssl_certfile=certfile, ssl_keyfile=keyfile)


def predict_command(
    data: Annotated[Path, typer.Option("--data", "-d", help="dataset folder with manifest.csv/.parquet")],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV to write")] = Path("predictions.csv"),
    model_uri: Annotated[
        Optional[str], typer.Option(help="MLflow model URI or a local model folder (default: models:/NAME@champion)")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="rows per forward")] = 64,
    log_dir: LogDirOption = None,
    no_log: Annotated[
        bool, typer.Option("--no-log", help="do not append these predictions to the prediction log")
    ] = False,
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Batch inference over a dataset's manifest: writes sample_id, label and one prob_<class> per class.

    The predictions are also appended to the prediction log (params monitor.log; --no-log: not),
    like the server's, so `mmops monitor` sees batch traffic too.
    """
    import mlflow
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from mmops.data.manifest import manifest_path
    from mmops.env import configure_tool_env
    from mmops.inference.predict import load_model_uri, predict_manifest
    from mmops.monitor.log import PredictionLog, record_manifest
    from mmops.registry.tracking import tracking_uri

    configure_tool_env()
    uri = model_uri or f"models:/{_default_model_name(params)}@champion"
    log_config = _log_config(params, log_dir, no_log)
    try:
        manifest_path(data)  # a missing dataset fails before the (slow) model load
        mlflow.set_tracking_uri(tracking_uri())
        loaded = load_model_uri(uri)
        with Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console) as bar:
            task = bar.add_task("predict", total=None)
            frame = predict_manifest(data, loaded, batch_size,
                                     progress=lambda done, total: bar.update(task, completed=done, total=total))
    except FileNotFoundError as err:
        _fail(str(err))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False)
    console.print(f"{len(frame)} predictions from {uri} written to {out}")
    if log_config.enabled:
        name, version = _model_identity(uri)
        with PredictionLog(log_config, name) as plog:
            record_manifest(plog, data, frame, version)
        dropped = f", {plog.dropped} not logged" if plog.dropped else ""
        console.print(f"{_log_line(log_config)} (+{plog.rows} rows{dropped})")


def _model_identity(uri: str) -> tuple[str, str]:
    """(model name, version) for the log: the registry's for a models:/ URI, (folder name, "local") for a folder."""
    if not uri.startswith("models:/"):
        return Path(uri).name, "local"
    from mlflow import MlflowClient

    from mmops.inference.verify import resolve_models_uri

    return resolve_models_uri(uri, MlflowClient())


app = typer.Typer(help="mmops serving commands", no_args_is_help=True, pretty_exceptions_enable=False)
app.command("serve")(serve_command)
app.command("predict")(predict_command)


if __name__ == "__main__":
    app()
