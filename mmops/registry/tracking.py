"""Where MLflow lives: `MLFLOW_TRACKING_URI` when set, else SQLite inside the project."""

from __future__ import annotations

import os
from pathlib import Path

from mmops.env import STATE_DIR


def tracking_uri(root: Path | None = None) -> str:
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    db = (root or Path.cwd()).resolve() / STATE_DIR / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"  # absolute path: sqlite:////abs/...


def artifact_location(root: Path | None = None) -> str | None:
    """Local artifact folder for the embedded store; a server decides its own otherwise."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    return ((root or Path.cwd()).resolve() / STATE_DIR / "mlartifacts").as_uri()


def setup_mlflow(experiment: str, root: Path | None = None):
    """Point MLflow at the store and make sure the experiment exists; return the module."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(root))
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=artifact_location(root))
    mlflow.set_experiment(experiment)
    return mlflow
