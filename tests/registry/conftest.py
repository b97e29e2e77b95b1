"""Registry fixtures: a SQLite MLflow store per test module, registered models without model files."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

_names = itertools.count()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """MLFLOW_TRACKING_URI -> a fresh SQLite store for the module; restored afterwards."""
    root = tmp_path_factory.mktemp("registry-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    yield uri
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old
    mlflow.set_tracking_uri(None)


def make_model(client: MlflowClient, source: Path | str, n: int = 4) -> str:
    """A registered model with versions 1..n: v3 was rejected by the gate; v4 is v2's int8 variant.

    `source`: a folder (embedded store) or a remote URI prefix (a server refuses local paths).
    """
    name = f"promo-{os.getpid()}-{next(_names)}"
    client.create_registered_model(name)
    for v in range(1, n + 1):
        client.create_model_version(name, source=f"{source}/v{v}", run_id=None)
        client.set_model_version_tag(name, str(v), "gate.decision", "rejected" if v == 3 else "promoted")
        client.set_model_version_tag(name, str(v), "gate.floor.accuracy",
                                     "fail value=0.2 threshold=0.8" if v == 3 else "pass value=0.9 threshold=0.8")
    if n >= 4:
        client.set_model_version_tag(name, "4", "mmops.variant", "int8")
        client.set_model_version_tag(name, "4", "mmops.variant_of", "2")
        client.set_model_version_tag(name, "2", "quantize.int8_version", "4")
    return name


@pytest.fixture
def model(store, tmp_path):
    """(client, name) of a fresh registered model in the module's store."""
    client = MlflowClient()
    return client, make_model(client, tmp_path)


@pytest.fixture
def model_factory():
    """`make_model(client, source_dir)` for tests that bring their own tracking store."""
    return make_model
