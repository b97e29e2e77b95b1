"""Retrain on new data: a small flow, scheduled every few minutes, that hashes the dataset and
starts the retrain deployment only when the hash differs from the last one it saw.

The last hash lives in a Prefect Variable (one per dataset folder), so every worker and the
UI share it; a run that finds the same hash does nothing. The hash is the dataset's content
hash (`mmops.data.hashing.dataset_hash`, the `data_hash` of the validation report), so
touching a file without changing it does not retrain, and changing one byte of one image does.
The hash is recorded when the retrain is started: a failed retrain is reported by its own
failure hook and is not started again until the data changes again (or someone reruns it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.variables import Variable

from mmops.env import configure_tool_env  # noqa: F401
from mmops.params_file import load_params

RETRAIN_DEPLOYMENT = "mmops-retrain/manual"


def variable_name(data: Path) -> str:
    """Prefect Variable that holds the last seen hash of the dataset folder `data`."""
    where = hashlib.sha256(str(Path(data).resolve()).encode()).hexdigest()[:12]
    return f"mmops_data_hash_{where}"


def start_retrain(deployment: str, params_path: str | None, overrides: list[str] | None, data_dir: str | None,
                  tags: list[str]):
    """Start a run of the retrain `deployment` with these params and return it without waiting (its flow
    run; the retrain's own concurrency limit queues it). The data and drift triggers both start runs here."""
    from prefect.deployments import run_deployment

    return run_deployment(
        deployment,
        parameters={"params_path": params_path, "overrides": list(overrides or []), "data_dir": data_dir},
        timeout=0,
        tags=tags,
        as_subflow=False,
    )


@flow(name="mmops-watch-data", log_prints=True)
def watch_data(
    params_path: str | None = "params.yaml",
    overrides: list[str] | None = None,
    data_dir: str | None = None,
    deployment: str = RETRAIN_DEPLOYMENT,
) -> dict:
    """Start `deployment` with the same params if the dataset changed since the last check."""
    from mmops.data.hashing import dataset_hash

    params = load_params(params_path, overrides)
    data = Path(data_dir) if data_dir else params.paths.data
    logger = get_run_logger()
    if not data.exists():
        logger.warning("dataset %s does not exist yet; nothing to do", data)
        return {"triggered": False, "data_hash": None, "previous": None}
    current = dataset_hash(data)
    name = variable_name(data)
    previous = Variable.get(name, default=None)
    if previous == current:
        logger.info("dataset %s unchanged (%s); no retrain", data, current[:12])
        return {"triggered": False, "data_hash": current, "previous": previous}
    run = start_retrain(deployment, params_path, overrides, str(data), ["trigger:new-data"])
    Variable.set(name, current, overwrite=True)
    logger.info("dataset %s changed (%s -> %s); started %s run %s", data, (previous or "none")[:12], current[:12],
                deployment, run.name)
    return {"triggered": True, "data_hash": current, "previous": previous, "flow_run_id": str(run.id)}
