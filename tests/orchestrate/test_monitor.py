"""Drift-triggered retraining (mmops/orchestrate/monitor.py), end to end: the demo-shaped champion registered
in a real MLflow store (its training reference saved with it), served with the prediction log on, in-domain
traffic then `test_shifted` traffic with feedback labels, the `mmops-monitor` flow on the session's real
Prefect server, and `mmops monitor` on the command line."""

from __future__ import annotations

import json
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from servers import mlflow_tracking

from mmops.orchestrate.monitor import cooling_down

POOL = "mmops-process"
NAME = "monitor-e2e"


def test_cooldown_holds_back_a_second_start_until_it_ends():
    now = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    last = {"time": (now - timedelta(minutes=30)).isoformat(), "flow_run_id": "x"}
    assert cooling_down(None, now, 60) is None
    assert cooling_down(last, now, 60) == now + timedelta(minutes=30)
    assert cooling_down(last, now, 30) is None  # exactly over
    assert cooling_down(last, now, 0) is None


def test_an_empty_log_is_an_empty_window(tmp_path):
    from mmops.orchestrate.monitor import read_window

    now = datetime.now(timezone.utc)
    frame, info = read_window(str(tmp_path / "no-log-yet"), NAME, ["1", "2"], last=100, minutes=60, now=now)
    assert len(frame) == 0 and "p.0" not in frame and info["first"] is None
    assert info["since"] == (now - timedelta(minutes=60)).isoformat(timespec="seconds") and info["versions"] == ["1", "2"]


def _traffic(dataset, split: str) -> pd.DataFrame:
    """Rows of `split` as a client sends them (absolute media paths; "" = missing)."""
    df = pd.read_csv(dataset / "manifest.csv", dtype=str, keep_default_na=False)
    rows = df[df["split"].isin(split.split("+"))].reset_index(drop=True)
    for column in ("image", "audio"):
        rows[column] = [str(dataset / p) if p else "" for p in rows[column]]
    return rows


def _send(client, rows: pd.DataFrame) -> float:
    """Send `rows` to the served champion (16 per request), then their true labels to /feedback, then wait
    until the log holds them; the accuracy of the answers."""
    import base64
    from pathlib import Path

    right = 0
    for start in range(0, len(rows), 16):
        chunk = rows.iloc[start:start + 16]
        instances = [{k: (base64.b64encode(Path(r[k]).read_bytes()).decode() if k != "text" else r[k])
                      for k in ("text", "image", "audio") if r[k]} for r in chunk.to_dict("records")]
        answer = client.post("/predict", json={"instances": instances})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        right += sum(p["label"] == label for p, label in zip(predictions, chunk["label"]))
        feedback = [{"request_id": p["request_id"], "label": label} for p, label in zip(predictions, chunk["label"])]
        assert client.post("/feedback", json={"feedback": feedback}).status_code == 200
    assert client.app.state.serve["log"].flush(timeout=60)
    return right / len(rows)


def _artifacts(key: str) -> list:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def _flow_run(run_id: str):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        return run, client.read_deployment(run.deployment_id)


@pytest.mark.slow  # registers, serves and runs flows on a real Prefect server
def test_shifted_traffic_drifts_and_starts_the_retrain(evaluated_copy, prefect_api, small_dataset, tmp_path):
    from fastapi.testclient import TestClient
    from mlflow import MlflowClient
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from typer.testing import CliRunner

    from mmops import stages
    from mmops.cli import app
    from mmops.config.monitor import PredictionLogConfig
    from mmops.monitor.reference import (
        REFERENCE_TAG,
        MissingReference,
        load_reference,
        save_reference,
    )
    from mmops.orchestrate.deploy import deploy
    from mmops.orchestrate.monitor import RUN_TAG, monitor_drift
    from mmops.serve.app import create_app
    from mmops.serve.reloader import RegistrySource
    from mmops.serve.settings import ServeSettings

    params, catalog = evaluated_copy(NAME)
    log_dir, reports = tmp_path / "log", tmp_path / "reports"
    in_domain, shifted = _traffic(small_dataset, "val+test"), _traffic(small_dataset, "test_shifted")
    base = [f"registry.model_name={NAME}", f"monitor.log.dir={log_dir}", f"paths.reports={reports}",
            "monitor.drift.min_rows=20", "monitor.trigger.min_feedback=20", "monitor.trigger.cooldown_minutes=60"]
    with mlflow_tracking(f"sqlite:///{tmp_path / 'mlflow.db'}") as uri, ExitStack() as serving:
        early = monitor_drift(params_path=None, overrides=base)  # scheduled before the first registration
        assert early["status"].startswith(f"registered model '{NAME}' has no `champion`") and not early["started"]
        registered = stages.register(params, catalog)
        assert registered["promoted"] and registered["version"] == "1"
        client = MlflowClient(uri)
        reference_uri = client.get_model_version(NAME, "1").tags[REFERENCE_TAG]
        assert reference_uri == f"runs:/{registered['run_id']}/monitor/reference.parquet"
        assert save_reference(client, NAME, "1", registered["run_id"], catalog, params.monitor.drift, 0) == {
            "reused": reference_uri}  # a retried registration keeps the first reference
        assert len(load_reference(client, NAME, "1")) > 0

        with get_client(sync_client=True) as prefect:
            prefect.create_work_pool(WorkPoolCreate(name=POOL, type="process"), overwrite=True)
        assert "mmops-monitor/watch" in deploy(None, base, str(small_dataset))

        settings = ServeSettings(poll_interval_s=0, token="", max_instances=16,
                                 prediction_log=PredictionLogConfig(dir=str(log_dir), flush_seconds=0.5))
        server = serving.enter_context(TestClient(create_app(settings, RegistrySource(NAME, tracking_uri=uri))))

        accuracy_in = _send(server, in_domain)
        calm = monitor_drift(params_path=None, overrides=[*base, f"monitor.drift.last={len(in_domain)}"],
                             data_dir=str(small_dataset))
        calm_doc = json.loads((reports / "monitor" / "drift.json").read_text())
        assert calm_doc["status"] == "ok" and calm_doc["window"]["n"] == len(in_domain)
        assert not any(m["drifted"] for m in calm_doc["modalities"].values()), calm_doc["modalities"]
        assert calm == calm | {"triggered": False, "started": False}
        assert calm_doc["live"]["n"] == len(in_domain) and calm_doc["live"]["accuracy"] == pytest.approx(accuracy_in)

        accuracy_shifted = _send(server, shifted)
        overrides = [*base, f"monitor.drift.last={len(shifted)}"]
        fired = monitor_drift(params_path=None, overrides=overrides, data_dir=str(small_dataset))
        doc = json.loads((reports / "monitor" / "drift.json").read_text())
        assert doc["modalities"]["audio"]["drifted"] and doc["modalities"]["image"]["drifted"], doc["modalities"]
        assert {"audio", "image"} <= set(doc["fired"]) and fired["started"] and fired["reasons"] == doc["reasons"]
        assert doc["live"]["accuracy"] == pytest.approx(accuracy_shifted)
        assert accuracy_shifted < accuracy_in  # the live accuracy drop the feedback shows
        assert doc["live"]["accuracy_drop"] == pytest.approx(doc["live"]["reference_accuracy"] - accuracy_shifted)
        assert json.loads((log_dir / "drift.json").read_text()) == doc  # what the server's /metrics reads
        assert "Drift report" in (reports / "monitor" / "drift.html").read_text()

        run, deployment = _flow_run(fired["flow_run_id"])  # on the real server; it need not finish
        assert f"{deployment.name}" == "manual" and run.parameters["overrides"] == overrides
        assert run.parameters["data_dir"] == str(small_dataset)
        assert {"trigger:drift", "drift:audio", "drift:image"} <= set(run.tags)
        assert any(fired["flow_run_id"] in a.data and doc["reasons"][0] in a.data for a in _artifacts("drift-trigger"))

        again = monitor_drift(params_path=None, overrides=overrides, data_dir=str(small_dataset))
        assert again["triggered"] and not again["started"] and again["cooldown_until"]

        cli = CliRunner().invoke(app, ["monitor", "--last", str(len(shifted)), "--out", str(tmp_path / "cli"),
                                       *(a for o in base for a in ("--set", o))])
        assert cli.exit_code == 0, cli.output
        assert "audio features" in cli.stdout and "DRIFT" in cli.stdout
        monitor_runs = client.search_runs([r.info.experiment_id for r in [client.get_run(registered["run_id"])]],
                                          f"tags.`{RUN_TAG}` = 'drift' and tags.`mmops.model_version` = '1'")
        assert len(monitor_runs) == 4  # two flow runs, the cooldown run, the CLI
        assert {a.path for a in client.list_artifacts(monitor_runs[0].info.run_id, "monitor")} == {
            "monitor/drift.json", "monitor/drift.html"}
        too_few = CliRunner().invoke(app, ["monitor", "--last", "5", "--out", str(tmp_path / "few"),
                                           *(a for o in base for a in ("--set", o))])
        assert too_few.exit_code == 0 and "not enough data (n=5 < min_rows=20)" in too_few.output

        bare = client.create_model_version(NAME, f"runs:/{registered['run_id']}/model", registered["run_id"]).version
        with pytest.raises(MissingReference, match=f"{NAME} v{bare} has no monitoring reference"):
            load_reference(client, NAME, bare)
