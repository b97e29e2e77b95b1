"""The scaled-out tracking set-up, natively: a real PostgreSQL, and the MLflow and Prefect servers
started with the commands of infra/commands.yaml (the ones compose and Kubernetes run), then
an MLflow round trip and the whole retrain flow against them.
"""

from __future__ import annotations

import re
import secrets

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from infra_commands import INFRA, env, render
from postgres_server import running_postgres
from servers import BIN, drain_prefect_clients, free_port, mlflow_tracking, running

pytestmark = pytest.mark.slow
ROUND_TRIP = "infra-roundtrip"
FLOW_MODEL = "mmops-infra-e2e"


def _native(argv: list[str]) -> list[str]:
    """commands.yaml argv -> this environment's executable (the venv's, as in tests/servers.py)."""
    return [str(BIN / argv[0]), *argv[1:]]


@pytest.fixture(scope="module")
def postgres():
    with running_postgres() as pg:
        pg.create_database("mlflow")
        pg.create_database("prefect")
        yield pg


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    """`mlflow server` with basic auth on PostgreSQL with proxied artifacts, as compose runs it (the
    repository's auth ini with its user store moved to a temp folder); this process is its admin.
    Yields (tracking URI, artifact folder)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    artifacts = root / "artifacts"
    ini = root / "basic_auth.ini"
    ini.write_text(re.sub(r"(?m)^database_uri = .*$", f"database_uri = sqlite:///{root / 'auth.db'}",
                          (INFRA / "mlflow" / "basic_auth.ini").read_text()))
    password = secrets.token_urlsafe(24)
    port = free_port()
    cmd = render("mlflow-server", artifacts_destination=artifacts.as_uri(), host="127.0.0.1", port=port)
    server_env = env("mlflow-server") | {
        "MLFLOW_BACKEND_STORE_URI": postgres.uri("mlflow"), "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin", "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
    }
    uri = f"http://127.0.0.1:{port}"
    with running(_native(cmd), f"{uri}/health", root / "server.log", server_env, timeout=180):
        with mlflow_tracking(uri), pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_TRACKING_USERNAME", "admin")
            mp.setenv("MLFLOW_TRACKING_PASSWORD", password)
            yield uri, artifacts


@pytest.fixture(scope="module")
def prefect_api(postgres, tmp_path_factory):
    """`prefect server start` on PostgreSQL (asyncpg), as in compose; yields the API URL."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    auth = f"mmops:{secrets.token_urlsafe(24)}"
    server_env = env("prefect-server") | {
        "PREFECT_HOME": str(home),
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": postgres.uri("prefect", driver="asyncpg"),
        "PREFECT_SERVER_API_AUTH_STRING": auth,  # as in compose: every client needs it
    }
    cmd = _native(render("prefect-server", host="127.0.0.1", port=port))
    with running(cmd, f"{api}/health", home / "server.log", server_env, timeout=180):
        with temporary_settings(updates={PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: auth}):
            try:
                yield api
            finally:
                drain_prefect_clients()


def test_mlflow_round_trip_on_postgres(mlflow_server, postgres):
    """A run with params, metrics and an artifact; a registered version; the `champion` alias."""
    from sklearn.linear_model import LogisticRegression

    uri, artifacts = mlflow_server
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(x, y)

    mlflow.set_experiment(ROUND_TRIP)
    with mlflow.start_run() as run:
        mlflow.log_params({"fusion": "concat", "lr": 0.01})
        for step, loss in enumerate([0.9, 0.5, 0.3]):
            mlflow.log_metric("loss", loss, step=step)
        mlflow.log_metric("accuracy", float(model.score(x, y)))
        mlflow.log_text("hello from the infra test\n", "notes/hello.txt")
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"],
                                        registered_model_name=ROUND_TRIP)

    client = MlflowClient()
    got = client.get_run(run.info.run_id)
    assert got.data.params == {"fusion": "concat", "lr": "0.01"}
    assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [0.9, 0.5, 0.3]
    # Artifacts go through the server to its --artifacts-destination (S3 in compose, a folder here).
    assert got.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/notes/hello.txt") == "hello from the infra test\n"
    assert list(artifacts.rglob("notes/hello.txt")), "the artifact is stored in the server's destination"

    version = info.registered_model_version
    client.set_registered_model_alias(ROUND_TRIP, "champion", version)
    assert client.get_model_version_by_alias(ROUND_TRIP, "champion").version == str(version)
    loaded = mlflow.pyfunc.load_model(f"models:/{ROUND_TRIP}@champion")
    np.testing.assert_array_equal(loaded.predict(pd.DataFrame(x)), model.predict(x))

    # ...and all of it is in PostgreSQL, not in a local fallback store.
    assert postgres.query("mlflow", f"SELECT key, value FROM params WHERE run_uuid = '{run.info.run_id}' ORDER BY key") == [
        ("fusion", "concat"), ("lr", "0.01")
    ]
    assert postgres.query("mlflow", f"SELECT alias, version FROM registered_model_aliases WHERE name = '{ROUND_TRIP}'") == [
        ("champion", int(version))
    ]


def test_retrain_flow_on_the_scaled_out_servers(mlflow_server, prefect_api, postgres, small_dataset, tiny_text_model,
                                                tmp_path, monkeypatch):
    """The lead's whole flow, unchanged, with only MLFLOW_TRACKING_URI and PREFECT_API_URL set."""
    from pipeline_overrides import overrides_for
    from mmops.orchestrate.retrain import retrain

    uri, _ = mlflow_server
    overrides = overrides_for(tmp_path, tiny_text_model, **{"registry.model_name": FLOW_MODEL})
    result = retrain(params_path=None, overrides=overrides, data_dir=str(small_dataset))

    registry = result["registry"]
    assert registry["tracking_uri"] == uri
    assert registry["promoted"] is True
    champion = MlflowClient().get_model_version_by_alias(FLOW_MODEL, "champion")
    assert champion.version == registry["version"] == "1"
    assert champion.tags["gate.decision"] == "promoted"
    assert len(champion.tags["lineage.data_hash"]) >= 16

    manifest = pd.read_csv(small_dataset / "manifest.csv", dtype=str, keep_default_na=False)
    rows = manifest[manifest["split"] == "test"].head(6).reset_index(drop=True)
    for col in ("image", "audio"):
        rows[col] = [str(small_dataset / p) if p else "" for p in rows[col]]
    monkeypatch.setenv("MMOPS_MEDIA_ROOT", str(small_dataset))  # the pyfunc reads paths only inside it
    predictions = mlflow.pyfunc.load_model(f"models:/{FLOW_MODEL}@champion").predict(rows[["text", "image", "audio"]])
    assert len(predictions) == len(rows) and set(predictions["label"]) <= {str(d) for d in range(10)}

    assert postgres.query("mlflow", f"SELECT name FROM registered_models WHERE name = '{FLOW_MODEL}'") == [(FLOW_MODEL,)]
    states = postgres.query("prefect", "SELECT f.name, r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id")
    assert ("mmops-retrain", "COMPLETED") in states
