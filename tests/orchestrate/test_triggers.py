"""The data trigger (mmops/orchestrate/watch.py) and the failure webhook (mmops/orchestrate/notify.py), on a real
Prefect server (the session's shared one)."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from mmops.stages import DataValidationError
from servers import prefect_api_at

POOL = "mmops-process"


@pytest.fixture(scope="module")
def api(shared_prefect):
    with prefect_api_at(shared_prefect.api) as url:
        yield url


@pytest.fixture
def webhook():
    """A real HTTP server on 127.0.0.1 that records the JSON bodies POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/mmops", received
    server.shutdown()
    server.server_close()


def _manual_runs(deployment_name: str = "mmops-retrain/manual", earlier: frozenset = frozenset()) -> list:
    """The deployment's flow runs, less the `earlier` ones (the server is the session's: another
    module may have deployed the same names)."""
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(deployment_name)
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
    return [r for r in runs if r.id not in earlier]


def test_data_trigger_fires_on_changed_data_only(api, small_dataset, tmp_path, fast_overrides):
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    from mmops.orchestrate.deploy import deploy
    from mmops.orchestrate.watch import watch_data

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    overrides = fast_overrides(tmp_path / "run")
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"), overwrite=True)
    deployed = deploy(None, overrides, str(data))
    assert set(deployed) == {"mmops-retrain/scheduled", "mmops-retrain/manual", "mmops-watch-data/watch",
                             "mmops-monitor/watch"}
    earlier = frozenset(r.id for r in _manual_runs())

    first = watch_data(params_path=None, overrides=overrides, data_dir=str(data))
    assert first["triggered"] and first["previous"] is None
    runs = _manual_runs(earlier=earlier)
    assert len(runs) == 1
    assert runs[0].parameters["data_dir"] == str(data) and runs[0].parameters["overrides"] == overrides
    assert "trigger:new-data" in runs[0].tags

    assert watch_data(params_path=None, overrides=overrides, data_dir=str(data))["triggered"] is False
    manifest = data / "manifest.csv"
    manifest.write_bytes(manifest.read_bytes())  # rewritten, same content: still unchanged
    assert watch_data(params_path=None, overrides=overrides, data_dir=str(data))["triggered"] is False
    assert len(_manual_runs(earlier=earlier)) == 1

    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    df.loc[0, "text"] = df.loc[0, "text"] + " more"
    df.to_csv(manifest, index=False)
    changed = watch_data(params_path=None, overrides=overrides, data_dir=str(data))
    assert changed["triggered"] and changed["previous"] == first["data_hash"] != changed["data_hash"]
    assert len(_manual_runs(earlier=earlier)) == 2

    image = data / df.loc[3, "image"]
    image.write_bytes(image.read_bytes()[:-1] + bytes([image.read_bytes()[-1] ^ 1]))  # one bit of one image
    assert watch_data(params_path=None, overrides=overrides, data_dir=str(data))["triggered"]
    assert len(_manual_runs(earlier=earlier)) == 3


def test_failed_run_posts_to_the_webhook_in_params(api, mislabeled_dataset, tmp_path, fast_overrides, webhook, monkeypatch):
    from mmops.orchestrate.retrain import retrain

    monkeypatch.delenv("MMOPS_WEBHOOK_URL", raising=False)
    url, received = webhook
    broken, bad_id = mislabeled_dataset
    overrides = fast_overrides(tmp_path / "run", **{"orchestration.webhook_url": url})
    with pytest.raises(DataValidationError, match=bad_id):
        retrain(params_path=None, overrides=overrides, data_dir=str(broken))
    assert len(received) == 1
    body = received[0]
    assert body["event"] == "mmops.flow_run.failed" and body["flow"] == "mmops-retrain"
    assert body["state"] == "Failed"
    assert bad_id in body["message"] and "DataValidationError" in body["message"]
    assert body["parameters"]["data_dir"] == str(broken)
    assert body["api_url"] == api and body["flow_run_id"]


def test_environment_webhook_wins_over_params(monkeypatch, tmp_path, fast_overrides):
    from mmops.orchestrate.notify import webhook_url

    overrides = fast_overrides(tmp_path, **{"orchestration.webhook_url": "http://127.0.0.1:1/from-params"})
    monkeypatch.delenv("MMOPS_WEBHOOK_URL", raising=False)
    assert webhook_url({"params_path": None, "overrides": overrides}) == "http://127.0.0.1:1/from-params"
    assert webhook_url({"params_path": None, "overrides": fast_overrides(tmp_path)}) is None
    monkeypatch.setenv("MMOPS_WEBHOOK_URL", "http://127.0.0.1:1/from-env")
    assert webhook_url({"params_path": None, "overrides": overrides}) == "http://127.0.0.1:1/from-env"


def test_an_unreachable_webhook_does_not_hide_the_failure(api, mislabeled_dataset, tmp_path, fast_overrides, monkeypatch):
    from servers import free_port

    from mmops.orchestrate.retrain import retrain

    monkeypatch.setenv("MMOPS_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/nobody-listens")
    broken, bad_id = mislabeled_dataset
    with pytest.raises(DataValidationError, match=bad_id):
        retrain(params_path=None, overrides=fast_overrides(tmp_path / "run"), data_dir=str(broken))
