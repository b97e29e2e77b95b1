"""Drift-triggered retraining: `mmops monitor` (one check) and the flow `mmops-monitor` that runs it on
an interval (deployment `mmops-monitor/watch`) and starts `mmops-retrain/manual` when it fires.

One check (`run_monitor`): resolve the monitored version (default: `champion`; an int8/ONNX variant
is monitored through its fp32 source, whose log rows it shares), fetch the training reference saved
with it at registration (`mmops.monitor.reference`), read a window of the prediction log (rows of
that version and its variants), test drift (`mmops.monitor.drift`) and live accuracy from the
feedback, then write `drift.json` + `drift.html` to `out`, a copy of `drift.json` into the log
folder (for the server's /metrics), an MLflow run tagged with the version (artifacts under
`monitor/`), and, inside a Prefect flow run, a Markdown and a table artifact.

The flow starts the retrain only when the check fired and the last drift-started retrain is older
than `monitor.trigger.cooldown_minutes`. That time lives in a Prefect Variable (one per model and
log folder, like the data trigger's hash), so every worker and the UI share it. The started run
carries the reasons: tags `trigger:drift` and `drift:<what fired>`, and the monitor run's artifact
and `drift.json` say why in words. The retrained model still goes through the gate.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger
from prefect.variables import Variable

from mmops.atomic import atomic_write_json, atomic_write_text
from mmops.config import Params
from mmops.env import configure_tool_env  # noqa: F401
from mmops.errors import UserError
from mmops.monitor import drift
from mmops.monitor.log import DRIFT_FILE, live_metrics, read_log, resolve_dir
from mmops.monitor.pgstore import is_postgres, redact, write_document
from mmops.monitor.reference import load_reference
from mmops.monitor.report import render_html, render_markdown, summary_rows
from mmops.monitor.summary import SUMMARY_COLUMNS
from mmops.orchestrate.watch import RETRAIN_DEPLOYMENT, start_retrain
from mmops.params_file import load_params

REPORT_HTML = "drift.html"
RUN_TAG = "mmops.monitor"  # on the MLflow runs of `mmops monitor`; mmops.model_version names the version


class NoChampion(UserError, LookupError):
    """Nothing to monitor yet: the registered model has no `champion` (and no version was named)."""


def monitored_versions(client, name: str, version: str | None) -> tuple[str, list[str]]:
    """(fp32 version whose reference counts, every version whose log rows count: it and its variants)."""
    from mmops.registry.promotion import CHAMPION, INT8_VERSION_TAG, ONNX_VERSION_TAG, VARIANT_OF_TAG, current_version

    version = version or current_version(client, name, CHAMPION)
    if version is None:
        raise NoChampion(f"registered model {name!r} has no `{CHAMPION}`: register one first, or pass --model-version")
    tags = client.get_model_version(name, str(version)).tags
    source = tags.get(VARIANT_OF_TAG, str(version))
    source_tags = tags if source == str(version) else client.get_model_version(name, source).tags
    variants = [source_tags[t] for t in (INT8_VERSION_TAG, ONNX_VERSION_TAG) if source_tags.get(t)]
    return source, [source, *variants]


def read_window(log_dir: str, name: str, versions: list[str], last: int | None, minutes: float | None,
                now: datetime) -> tuple[pd.DataFrame, dict]:
    """The window's log rows (time order) and its description for drift.json."""
    since = now - timedelta(minutes=minutes) if minutes else None
    frames = [read_log(log_dir, since=since, until=now, model_version=v, columns=["label", *SUMMARY_COLUMNS])
              for v in versions]
    frame = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
    frame = frame[frame["model_name"] == name].sort_values("time", kind="stable", ignore_index=True)
    if last:
        frame = frame.tail(last).reset_index(drop=True)
    info = {"last": last, "minutes": minutes, "since": since.isoformat(timespec="seconds") if since else None,
            "until": now.isoformat(timespec="seconds"), "versions": versions, "log": redact(log_dir),
            "first": frame["time"].min().isoformat(timespec="seconds") if len(frame) else None}
    return frame, info


def reference_accuracy(client, name: str, version: str) -> float | None:
    """The test accuracy logged by the registration run of `version` (metric `test_accuracy`)."""
    run_id = client.get_model_version(name, version).run_id
    return client.get_run(run_id).data.metrics.get("test_accuracy") if run_id else None


def write_to_log_dir(log_dir: str, doc: dict) -> str:
    """A copy of drift.json in the log folder (or bucket, or PostgreSQL table), where the server's /metrics reads it."""
    if is_postgres(log_dir):
        write_document(log_dir, DRIFT_FILE, json.dumps(doc, indent=2))
        return f"{redact(log_dir)} ({DRIFT_FILE})"
    if "://" not in log_dir:
        return str(atomic_write_json(Path(log_dir) / DRIFT_FILE, doc))
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(log_dir)
    with fs.open_output_stream(f"{root.rstrip('/')}/{DRIFT_FILE}") as out:  # an object put replaces it whole
        out.write(json.dumps(doc, indent=2).encode())
    return f"{log_dir.rstrip('/')}/{DRIFT_FILE}"


def log_to_mlflow(params: Params, doc: dict, out: Path) -> str:
    """An MLflow run tagged with the model version, its scores as metrics, the report under monitor/."""
    from mmops.registry.tracking import setup_mlflow

    mlflow = setup_mlflow(params.registry.experiment)
    tags = {RUN_TAG: "drift", "mmops.model_name": doc["model_name"], "mmops.model_version": doc["model_version"],
            "mmops.monitor.status": doc["status"], "mmops.monitor.triggered": str(doc["triggered"]).lower()}
    with mlflow.start_run(run_name=f"monitor v{doc['model_version']}", tags=tags) as run:
        metrics = {"window_rows": doc["window"]["n"]}
        for modality, result in doc["modalities"].items():
            if result["score"] is not None:
                metrics[f"drift_{modality}_share"] = result["score"]
        if doc["prediction"].get("score") is not None:
            metrics["drift_prediction_score"] = doc["prediction"]["score"]
        for key in ("accuracy", "macro_f1", "accuracy_drop", "n"):
            if doc["live"] and doc["live"].get(key) is not None:
                metrics[f"live_{key}"] = float(doc["live"][key])
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(out / "drift.json"), "monitor")
        mlflow.log_artifact(str(out / REPORT_HTML), "monitor")
    mlflow.MlflowClient().set_model_version_tag(
        doc["model_name"], doc["model_version"], "monitor.last_check",
        f"{doc['time']} {'triggered' if doc['triggered'] else doc['status']} (run {run.info.run_id})")
    return run.info.run_id


def publish_artifacts(doc: dict) -> None:
    """Inside a Prefect flow run: the report as Markdown and the summary as a table artifact."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    create_markdown_artifact(key="drift-report", markdown=render_markdown(doc),
                             description=f"drift of {doc['model_name']} v{doc['model_version']}")
    create_table_artifact(key="drift-summary", table=summary_rows(doc), description="per-modality drift")


def run_monitor(params: Params, out: Path, model_version: str | None = None, last: int | None = None,
                minutes: float | None = None, now: datetime | None = None) -> dict:
    """One drift check (see the module doc); returns the drift document plus where it went (`outputs`)."""
    from mlflow import MlflowClient

    from mmops.registry.tracking import tracking_uri

    client = MlflowClient(tracking_uri())
    name = params.registry.model_name
    cfg = params.monitor.drift
    last = last if last is not None else cfg.last
    minutes = minutes if minutes is not None else cfg.minutes
    now = now or datetime.now(timezone.utc)
    source, versions = monitored_versions(client, name, model_version)
    reference = load_reference(client, name, source)
    log_dir = resolve_dir(params.monitor.log.dir)
    window, info = read_window(log_dir, name, versions, last, minutes, now)
    doc = drift.check(reference, window, cfg, params.monitor.trigger, model_name=name, model_version=source,
                      window_info=info, live=live_metrics(window),
                      reference_accuracy=reference_accuracy(client, name, source), now=now)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "drift.json", doc)
    atomic_write_text(out / REPORT_HTML, render_html(doc, reference, window))
    outputs = {"json": str(out / "drift.json"), "html": str(out / REPORT_HTML), "log_copy": write_to_log_dir(log_dir, doc)}
    outputs["mlflow_run_id"] = log_to_mlflow(params, doc, out)
    publish_artifacts(doc)
    return doc | {"outputs": outputs}


# -- the flow ---------------------------------------------------------------------------------


def cooldown_variable(params: Params) -> str:
    """Prefect Variable holding the last drift-started retrain of this model and log folder."""
    key = f"{params.registry.model_name}\0{resolve_dir(params.monitor.log.dir)}"
    return f"mmops_drift_retrain_{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def cooling_down(last: dict | None, now: datetime, cooldown_minutes: float) -> datetime | None:
    """Until when the last start (`{"time": ISO, ...}` or None) holds back another; None: not."""
    if not last or not last.get("time"):
        return None
    until = datetime.fromisoformat(last["time"]) + timedelta(minutes=cooldown_minutes)
    return until if now < until else None


@flow(name="mmops-monitor", log_prints=True)
def monitor_drift(
    params_path: str | None = "params.yaml",
    overrides: list[str] | None = None,
    data_dir: str | None = None,
    deployment: str = RETRAIN_DEPLOYMENT,
    model_version: str | None = None,
    out: str | None = None,
) -> dict:
    """Check drift; start `deployment` (the same params and data) when it fired, outside the cooldown."""
    from prefect.artifacts import create_markdown_artifact

    params = load_params(params_path, overrides)
    logger = get_run_logger()
    try:
        doc = run_monitor(params, Path(out) if out else Path(params.paths.reports) / "monitor", model_version)
    except NoChampion as err:  # a schedule set up before the first registration: nothing to do yet
        logger.warning("%s; nothing to monitor", err)
        return {"triggered": False, "started": False, "reasons": [], "status": str(err)}
    result = {"triggered": doc["triggered"], "started": False, "reasons": doc["reasons"], "status": doc["status"],
              "model_version": doc["model_version"], "outputs": doc["outputs"]}
    if not doc["triggered"]:
        logger.info("v%s: %s; no retrain", doc["model_version"], doc["status"] if doc["status"] != "ok" else "no drift")
        return result
    now = datetime.now(timezone.utc)
    name = cooldown_variable(params)
    last = Variable.get(name, default=None)
    until = cooling_down(last, now, params.monitor.trigger.cooldown_minutes)
    if until is not None:
        why = (f"Drift fired ({'; '.join(doc['reasons'])}), but a retrain was started at {last['time']} "
               f"(flow run {last.get('flow_run_id')}): cooldown until {until.isoformat(timespec='seconds')}; not started.")
        logger.info(why)
        create_markdown_artifact(key="drift-trigger", markdown=why, description="drift-triggered retrain")
        return result | {"cooldown_until": until.isoformat(timespec="seconds")}
    tags = ["trigger:drift", *(f"drift:{what}" for what in doc["fired"])]
    run = start_retrain(deployment, params_path, overrides, data_dir, tags)
    Variable.set(name, {"time": now.isoformat(), "flow_run_id": str(run.id), "model_version": doc["model_version"],
                        "reasons": doc["reasons"]}, overwrite=True)
    why = "\n".join([f"Started `{deployment}` run `{run.name}` ({run.id}) because:", "",
                     *(f"- {r}" for r in doc["reasons"])])
    logger.info(why)
    create_markdown_artifact(key="drift-trigger", markdown=why, description="drift-triggered retrain")
    return result | {"started": True, "flow_run_id": str(run.id), "tags": tags}
