"""Where MLflow lives: `MLFLOW_TRACKING_URI` when set (a server decides where artifacts go), else
SQLite in `<project>/.mmops/mlflow.db` with every artifact under `<project>/.mmops/mlartifacts`.

The project is the folder `mmops.env.project_root` names (`$MMOPS_PROJECT_ROOT`, else
the nearest folder up from the working directory with `params.yaml` or `dvc.yaml`), so running
mmops from a subfolder neither starts a second store nor leaves a `./mlruns` behind.

Frozen pretrained weights are stored once per content hash (`store_blob`): one run per digest in
the experiment `mmops-blobs`, its file logged as that run's artifact (works alike for the embedded
file store and a server's artifact proxy or object store).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from mmops.env import STATE_DIR, project_root

log = logging.getLogger(__name__)


def state_dir(root: Path | None = None) -> Path:
    return (root or project_root()).resolve() / STATE_DIR


def tracking_uri(root: Path | None = None) -> str:
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    db = state_dir(root) / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"  # absolute path: sqlite:////abs/...


def artifact_location(root: Path | None = None) -> str | None:
    """Where a new experiment keeps its artifacts: beside the SQLite file of a SQLite store (the
    embedded one: `<project>/.mmops/mlartifacts`); None for a server, which decides its own.

    Decided by the URI, not by whether `MLFLOW_TRACKING_URI` is set: `mlflow.set_tracking_uri`
    sets that variable itself, and MLflow's fallback is `./mlruns` of the working directory.
    """
    uri = tracking_uri(root)
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri.removeprefix("sqlite:///").split("?")[0]).resolve()
    return (db.parent / "mlartifacts").as_uri()


def ensure_experiment(client, experiment: str, root: Path | None = None) -> str:
    """The id of `experiment`, created with the project's artifact location when missing. An
    existing experiment whose artifacts live elsewhere keeps working, with a warning."""
    found = client.get_experiment_by_name(experiment)
    wanted = artifact_location(root)
    if found is None:
        try:
            return client.create_experiment(experiment, artifact_location=wanted)
        except Exception:  # noqa: BLE001  created concurrently by another registration
            found = client.get_experiment_by_name(experiment)
            if found is None:
                raise
    if wanted is not None and not found.artifact_location.startswith(wanted):
        log.warning(
            "MLflow experiment %r keeps its artifacts in %s, outside this project's state folder (%s); it "
            "still works. Rename or delete it (`mlflow experiments delete`) to have new runs stored under %s.",
            experiment, found.artifact_location, state_dir(root), wanted,
        )
    return found.experiment_id


def setup_mlflow(experiment: str, root: Path | None = None):
    """Point MLflow at the store and make sure the experiment exists; return the module."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri(root))
    ensure_experiment(MlflowClient(), experiment, root)
    mlflow.set_experiment(experiment)
    return mlflow


def store_blob(client, path: Path, sha256: str, name: str | None = None) -> str:
    """Store the file `path` (content `sha256`) in the blob store, as `name` (default: its own name),
    unless it is there; returns its run id."""
    from mmops.inference.verify import BLOB_DIR, BLOB_EXPERIMENT, BLOB_TAG, blob_run_id  # torch: not for tracking_uri()

    if run_id := blob_run_id(client, sha256):
        return run_id
    experiment_id = ensure_experiment(client, BLOB_EXPERIMENT)
    run = client.create_run(experiment_id, run_name=f"blob-{sha256[:12]}", tags={BLOB_TAG: sha256})
    try:
        with tempfile.TemporaryDirectory(prefix="mmops-blob-") as tmp:
            named = Path(path)
            if name and named.name != name:  # e.g. the local cache's `<sha256>.safetensors`
                named = Path(tmp) / name
                shutil.copyfile(path, named)
            client.log_artifact(run.info.run_id, str(named), f"{BLOB_DIR}/{sha256}")
    except BaseException:
        client.set_terminated(run.info.run_id, status="FAILED")
        raise
    client.set_terminated(run.info.run_id)
    return run.info.run_id


# what `mlflow.pyfunc.log_model` says about every mmops registration and is expected: the pyfunc
# is models-from-code (no pickle), and its type hints infer no signature (an explicit one is given)
EXPECTED_LOG_MODEL_WARNINGS = (
    "Passing a Python object as `python_model`",
    "Failed to infer model signature: Type hint",
)


class _DropExpected(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(expected) for expected in EXPECTED_LOG_MODEL_WARNINGS)


@contextmanager
def quiet_log_model():
    """Silence only the expected `log_model` warnings (`EXPECTED_LOG_MODEL_WARNINGS`) while it runs."""
    logger, dropped = logging.getLogger("mlflow.pyfunc"), _DropExpected()
    logger.addFilter(dropped)
    try:
        yield
    finally:
        logger.removeFilter(dropped)
