"""Against a real `mlflow server --app-name basic-auth`: no credentials, no registry writes; the
pipeline's user registers and promotes, and the alias history names that user."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mmops.registry.promotion import (
    CHAMPION,
    compare_and_set,
    current_version,
    promote,
    read_history,
)
from servers import MLFLOW_ADMIN, mlflow_auth_server, mlflow_tracking

pytestmark = pytest.mark.slow  # starts an MLflow server
USERS_SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "mlflow" / "users.py"  # what compose runs
ADMIN_PASSWORD = secrets.token_urlsafe(24)
PIPELINE, PIPELINE_PASSWORD = "mmops-pipeline", secrets.token_urlsafe(24)
OUTSIDER, OUTSIDER_PASSWORD = "someone-else", secrets.token_urlsafe(24)
CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The auth server with two users beside the admin: the pipeline's and one with no grants."""
    root = tmp_path_factory.mktemp("mlflow-auth")
    with mlflow_auth_server(root, ADMIN_PASSWORD) as (uri, proc):
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_TRACKING_USERNAME": MLFLOW_ADMIN,
               "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD, "MLFLOW_PASSWORD_MMOPS_PIPELINE": "first-" + PIPELINE_PASSWORD,
               "MLFLOW_PASSWORD_SOMEONE_ELSE": OUTSIDER_PASSWORD}
        users = [sys.executable, str(USERS_SCRIPT), f"{PIPELINE},{OUTSIDER}"]
        first = subprocess.run(users, env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0 and f"created MLflow user {PIPELINE}" in first.stdout, first.stderr
        again = subprocess.run(users, env=env | {"MLFLOW_PASSWORD_MMOPS_PIPELINE": PIPELINE_PASSWORD},
                               capture_output=True, text=True, timeout=120)  # idempotent: resets the password
        assert again.returncode == 0 and f"MLflow user {PIPELINE} exists" in again.stdout, again.stderr
        assert not any(p in first.stdout + first.stderr + again.stdout + again.stderr
                       for p in (ADMIN_PASSWORD, PIPELINE_PASSWORD, OUTSIDER_PASSWORD))
        with mlflow_tracking(uri):
            yield uri, proc, root


@pytest.fixture
def as_user(monkeypatch):
    """Set (or, with None, clear) the MLflow credentials of this process."""

    def login(user: str | None, password: str | None = None) -> MlflowClient:
        for name, value in zip(CREDENTIALS, (user, password)):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        return MlflowClient()

    return login


@pytest.fixture
def registered(server, as_user, model_factory, tmp_path, monkeypatch):
    """A model the pipeline user registered (v1..v4, as in the registry conftest), v1 the champion."""
    monkeypatch.setenv("MMOPS_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("MMOPS_ACTOR", raising=False)
    client = as_user(PIPELINE, PIPELINE_PASSWORD)
    name = model_factory(client, "s3://mmops-test/never-read")  # versions without files: only aliases move
    promote(client, name, "1", "first release", pin=False)  # automatic promotion must carry on
    return name


def _refused(call, *args) -> str:
    with pytest.raises(MlflowException) as err:
        call(*args)
    return str(err.value)


def test_without_credentials_nothing_is_registered_or_moved(registered, as_user):
    anonymous = as_user(None)
    message = _refused(anonymous.create_registered_model, "sneaky")
    assert "401" in message or "Unauthorized" in message or "credentials" in message.lower(), message
    _refused(anonymous.create_model_version, registered, "s3://evil/model", None)
    _refused(anonymous.set_registered_model_alias, registered, CHAMPION, "2")
    _refused(anonymous.search_registered_models)

    wrong = as_user(PIPELINE, "not-the-password-at-all")
    _refused(wrong.set_registered_model_alias, registered, CHAMPION, "2")

    outsider = as_user(OUTSIDER, OUTSIDER_PASSWORD)  # authenticated, but no permission on the model
    message = _refused(outsider.set_registered_model_alias, registered, CHAMPION, "2")
    assert "PERMISSION_DENIED" in message or "403" in message, message
    _refused(outsider.create_model_version, registered, "s3://evil/model", None)

    pipeline = as_user(PIPELINE, PIPELINE_PASSWORD)
    assert current_version(pipeline, registered) == "1"
    assert len(pipeline.search_model_versions(f"name='{registered}'")) == 4


def test_the_pipeline_user_promotes_and_history_names_it(registered, as_user):
    client = as_user(PIPELINE, PIPELINE_PASSWORD)
    moved = compare_and_set(client, registered, "2", "1", action="auto-promote", reason="gate passed",
                            rules={"regression.macro_f1": "pass"})
    assert moved.moved and current_version(client, registered) == "2"
    events = [e for e in read_history(client, registered) if e.alias == CHAMPION]
    assert [(e.from_version, e.to_version, e.actor) for e in events] == [(None, "1", PIPELINE), ("1", "2", PIPELINE)]


def test_no_password_in_any_argv_or_log_line(server, registered):
    _, proc, root = server
    secrets_seen = [ADMIN_PASSWORD, PIPELINE_PASSWORD, OUTSIDER_PASSWORD]
    secrets_seen += [base64.b64encode(f"{u}:{p}".encode()).decode()
                     for u, p in ((MLFLOW_ADMIN, ADMIN_PASSWORD), (PIPELINE, PIPELINE_PASSWORD))]
    parent = psutil.Process(proc.pid)
    processes = [parent, *parent.children(recursive=True)]
    assert len(processes) >= 2  # the CLI and its uvicorn worker
    for p in processes:
        argv = " ".join(p.cmdline())
        assert not any(s in argv for s in secrets_seen), argv
    files = [root / "server.log", root / "basic_auth.ini"]
    assert (root / "server.log").stat().st_size > 0
    for path in files:
        text = path.read_text()
        assert not any(s in text for s in secrets_seen), path
