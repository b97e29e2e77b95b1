"""Register the mmops deployments with the Prefect server that PREFECT_API_URL names.

    mmops-retrain/scheduled   cron + timezone from `orchestration.schedule` in params.yaml
    mmops-retrain/manual      no schedule: `prefect deployment run mmops-retrain/manual`, the UI,
                              or the data trigger
    mmops-watch-data/watch    every `orchestration.watch.interval_minutes`: starts `manual`
                              when the dataset's content hash changed (mmops/orchestrate/watch.py)
    mmops-monitor/watch       every `monitor.trigger.interval_minutes`: checks drift of the
                              prediction log and starts `manual` when it fires (mmops/orchestrate/monitor.py)

All go to the work pool `orchestration.work_pool` (a `process` pool by default) and import the
flows from the installed `mmops.orchestrate` package (module entrypoints: no image, no code upload). Each
retrain deployment admits one run at a time (further runs wait: ENQUEUE), and the flow itself
holds the global concurrency limit `mmops-retrain`, so runs of different deployments queue too.

    python -m mmops.orchestrate.deploy --params params.yaml [--set k=v ...] [--working-dir DIR]
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect.client.schemas.objects import (
    ConcurrencyLimitConfig,
    ConcurrencyLimitStrategy,
)
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron, Interval

from mmops.config import Params
from mmops.env import configure_tool_env  # noqa: F401
from mmops.orchestrate.monitor import monitor_drift
from mmops.orchestrate.retrain import CONCURRENCY_LIMIT, retrain
from mmops.orchestrate.watch import RETRAIN_DEPLOYMENT, watch_data
from mmops.params_file import load_params


def flow_parameters(params_path: str | None, overrides: list[str] | None, data_dir: str | None) -> dict[str, Any]:
    """Parameters every deployment passes to its flow; paths made absolute (workers run elsewhere)."""
    return {
        "params_path": str(Path(params_path).resolve()) if params_path else None,
        "overrides": list(overrides or []),
        "data_dir": str(Path(data_dir).resolve()) if data_dir else None,
    }


def build_deployments(
    params: Params, parameters: dict[str, Any], working_dir: str | None = None
) -> list[RunnerDeployment]:
    """The scheduled and manual retrain deployments, the data watch and the drift watch, not yet applied."""
    orch, trigger = params.orchestration, params.monitor.trigger
    common: dict[str, Any] = {
        "work_pool_name": orch.work_pool,
        "job_variables": {"working_dir": working_dir} if working_dir else {},
        "entrypoint_type": EntrypointType.MODULE_PATH,
        "tags": ["mmops"],
    }
    one_at_a_time = ConcurrencyLimitConfig(limit=orch.max_concurrent_runs, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)
    cron = Cron(orch.schedule.cron, timezone=orch.schedule.timezone, active=orch.schedule.enabled)
    return [
        retrain.to_deployment(
            "scheduled", schedules=[cron], concurrency_limit=one_at_a_time, parameters=parameters,
            description=f"Retrain at `{orch.schedule.cron}` ({orch.schedule.timezone}).", **common,
        ),
        retrain.to_deployment(
            "manual", concurrency_limit=one_at_a_time, parameters=parameters,
            description="Retrain on demand (UI, `prefect deployment run`, or the data trigger).", **common,
        ),
        watch_data.to_deployment(
            "watch",
            schedules=[Interval(timedelta(minutes=orch.watch.interval_minutes))],
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
            parameters=parameters | {"deployment": RETRAIN_DEPLOYMENT},
            description="Start mmops-retrain/manual when the dataset's content hash changes.", **common,
        ),
        monitor_drift.to_deployment(
            "watch",
            schedules=[Interval(timedelta(minutes=trigger.interval_minutes), active=trigger.enabled)],
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
            parameters=parameters | {"deployment": RETRAIN_DEPLOYMENT},
            description="Check drift of the prediction log; start mmops-retrain/manual when it crosses "
                        "`monitor.trigger` (with a cooldown).", **common,
        ),
    ]


def deploy(
    params_path: str | None = "params.yaml",
    overrides: list[str] | None = None,
    data_dir: str | None = None,
    working_dir: str | None = None,
) -> dict[str, str]:
    """Create or update the deployments and the global concurrency limit; {full name: id}."""
    from prefect import get_client

    params = load_params(params_path, overrides)
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(CONCURRENCY_LIMIT, params.orchestration.max_concurrent_runs)
    ids = {}
    for deployment in build_deployments(params, flow_parameters(params_path, overrides, data_dir), working_dir):
        ids[deployment.full_name] = str(deployment.apply())
    return ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value")
    parser.add_argument("--data", default=None, help="dataset folder (default: paths.data)")
    parser.add_argument("--working-dir", default=None, help="where flow runs start (default: the pool's)")
    args = parser.parse_args(argv)
    params_path = args.params if Path(args.params).exists() else None
    for name, deployment_id in deploy(params_path, args.overrides, args.data, args.working_dir).items():
        print(f"deployed {name} ({deployment_id})")


if __name__ == "__main__":
    main()
