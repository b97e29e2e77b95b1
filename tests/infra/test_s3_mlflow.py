"""MLflow with its artifacts in real object storage: the `mlflow-server` command of
infra/commands.yaml (basic auth, proxied artifacts) with `--artifacts-destination s3://mlflow/artifacts`
on a SeaweedFS S3 server that requires keys. The project's own register stage logs and registers a
trained model through it, and the champion comes back from S3, verified, with the same predictions.

Only the MLflow server holds S3 keys (MLFLOW_S3_ENDPOINT_URL and AWS_* in its environment); the
client, this process, has none: artifacts go through the server (`mlflow-artifacts:/`).
"""

from __future__ import annotations

import hashlib
import re
import secrets

import boto3
import numpy as np
import pandas as pd
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from infra_commands import INFRA, env, render
from mlflow import MlflowClient
from s3_server import MLFLOW_BUCKET, REGION
from servers import BIN, free_port, mlflow_tracking, running

pytestmark = pytest.mark.slow  # a SeaweedFS server, an MLflow server, one evaluation, one registration
NAME = "mmops-s3"
PREFIX = "artifacts"  # --artifacts-destination s3://mlflow/artifacts, as in compose
CLIENT_S3_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "MLFLOW_S3_ENDPOINT_URL")


def test_s3_server_refuses_requests_without_its_keys(s3_server):
    """Anonymous and wrongly signed requests are refused; the keys read and write."""
    key = f"probe/{secrets.token_hex(4)}.txt"
    s3_server.client().put_object(Bucket=MLFLOW_BUCKET, Key=key, Body=b"probe")
    assert s3_server.client().get_object(Bucket=MLFLOW_BUCKET, Key=key)["Body"].read() == b"probe"
    anonymous = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name=REGION,
                             config=Config(signature_version=UNSIGNED))
    with pytest.raises(ClientError) as refused:
        anonymous.get_object(Bucket=MLFLOW_BUCKET, Key=key)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as wrong:
        s3_server.client(secret_key="not-" + s3_server.secret_key).get_object(Bucket=MLFLOW_BUCKET, Key=key)
    assert wrong.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    s3_server.client().delete_object(Bucket=MLFLOW_BUCKET, Key=key)


@pytest.fixture(scope="module")
def mlflow_on_s3(s3_server, tmp_path_factory):
    """The `mlflow-server` command with SQLite tracking and S3 artifacts; this process is its admin
    and holds no S3 keys. Yields the tracking URI."""
    root = tmp_path_factory.mktemp("mlflow-s3")
    ini = root / "basic_auth.ini"
    ini.write_text(re.sub(r"(?m)^database_uri = .*$", f"database_uri = sqlite:///{root / 'auth.db'}",
                          (INFRA / "mlflow" / "basic_auth.ini").read_text()))
    password = secrets.token_urlsafe(24)
    port = free_port()
    cmd = render("mlflow-server", artifacts_destination=f"s3://{MLFLOW_BUCKET}/{PREFIX}", host="127.0.0.1", port=port)
    server_env = env("mlflow-server") | s3_server.env | {
        "MLFLOW_S3_ENDPOINT_URL": s3_server.endpoint,
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{root / 'mlflow.db'}",
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin", "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
    }
    uri = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for name in CLIENT_S3_ENV:
            mp.delenv(name, raising=False)
        # no shared credentials file, no config profile, no instance metadata: nothing to find keys in
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(root / "no-credentials"))
        mp.setenv("AWS_CONFIG_FILE", str(root / "no-config"))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        with running([str(BIN / cmd[0]), *cmd[1:]], f"{uri}/health", root / "server.log", server_env, timeout=180):
            with mlflow_tracking(uri):
                mp.setenv("MLFLOW_TRACKING_USERNAME", "admin")
                mp.setenv("MLFLOW_TRACKING_PASSWORD", password)
                yield uri


@pytest.fixture(scope="module")
def evaluated(evaluated_copy):
    """(params, catalogue): the shared trained model, evaluated, to be registered as NAME."""
    return evaluated_copy(NAME)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_register_and_load_the_champion_through_mlflow_on_s3(mlflow_on_s3, s3_server, evaluated, small_dataset,
                                                              tmp_path):
    from mmops.catalog import CHECKPOINT
    from mmops.inference.model_dir import load_model_dir
    from mmops.inference.predict import load_model_uri, predict_frame
    from mmops.registry.register import register

    params, catalog = evaluated
    assert boto3.Session().get_credentials() is None  # the client has no S3 keys anywhere
    before = set(s3_server.keys(MLFLOW_BUCKET, PREFIX + "/"))

    result = register(params, catalog)  # the register stage, as `mmops register` runs it
    assert result["tracking_uri"] == mlflow_on_s3
    assert result["version"] == "1" and result["promoted"] is True

    client = MlflowClient()
    run = client.get_run(result["run_id"])
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied: the client never talks to S3
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert champion.version == "1"

    # The artifacts are objects in the bucket, under the destination prefix, byte for byte.
    stored = set(s3_server.keys(MLFLOW_BUCKET, PREFIX + "/")) - before
    gate_md = [k for k in stored if k.startswith(f"{PREFIX}/") and k.endswith(f"{run.info.run_id}/artifacts/gate/gate.md")]
    assert len(gate_md) == 1, sorted(stored)[:20]
    checkpoints = [k for k in stored if k.endswith("/" + CHECKPOINT)]
    assert len(checkpoints) == 1, sorted(stored)[:40]
    local = (catalog.model / CHECKPOINT).read_bytes()
    in_s3 = s3_server.client().get_object(Bucket=MLFLOW_BUCKET, Key=checkpoints[0])["Body"].read()
    assert _sha256(in_s3) == _sha256(local)
    assert any(k.endswith("/MLmodel") for k in stored)
    # ...and the bucket is not readable without the keys: what comes back below came through MLflow.
    with pytest.raises(ClientError):
        boto3.client("s3", endpoint_url=s3_server.endpoint, region_name=REGION,
                     config=Config(signature_version=UNSIGNED)).get_object(Bucket=MLFLOW_BUCKET, Key=checkpoints[0])

    # The champion back from S3, as `mmops serve` / `mmops predict` load it (digests verified).
    loaded = load_model_uri(f"models:/{NAME}@champion", tmp_path / "download")
    downloaded = next((tmp_path / "download").rglob(CHECKPOINT))
    assert _sha256(downloaded.read_bytes()) == _sha256(local)

    manifest = pd.read_csv(small_dataset / "manifest.csv", dtype=str, keep_default_na=False)
    rows = manifest[manifest["split"] == "test"].head(8).reset_index(drop=True)
    for col in ("image", "audio"):
        rows[col] = [str(small_dataset / p) if p else "" for p in rows[col]]
    rows = rows[["text", "image", "audio"]]
    got = predict_frame(loaded, rows.copy())
    want = predict_frame(load_model_dir(catalog.model), rows.copy())
    assert list(got["label"]) == list(want["label"])
    np.testing.assert_allclose(got.drop(columns="label").to_numpy(), want.drop(columns="label").to_numpy(), atol=1e-6)
    assert boto3.Session().get_credentials() is None  # still none: nothing handed the client a key
