"""Failure notification: log the failed run and POST a JSON summary to an optional webhook."""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from typing import Any

WEBHOOK_ENV = "MMOPS_WEBHOOK_URL"
logger = logging.getLogger("mmops.flows")


def webhook_url(parameters: dict[str, Any]) -> str | None:
    """`MMOPS_WEBHOOK_URL` if set, else `orchestration.webhook_url` of the run's params (or None)."""
    if os.environ.get(WEBHOOK_ENV):
        return os.environ[WEBHOOK_ENV]
    from mmops.config import ConfigError
    from mmops.params_file import load_params

    try:
        params = load_params(parameters.get("params_path"), parameters.get("overrides"))
    except (ConfigError, OSError):
        return None  # the params themselves are broken; the run's error already says so
    return params.orchestration.webhook_url


def failure_summary(flow_name: str, flow_run, state) -> dict[str, Any]:
    """What a person on call needs: which run, which deployment, what went wrong."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    ui = PREFECT_UI_URL.value()
    return {
        "event": "mmops.flow_run.failed",
        "flow": flow_name,
        "flow_run_id": str(flow_run.id),
        "flow_run_name": flow_run.name,
        "deployment_id": str(flow_run.deployment_id) if flow_run.deployment_id else None,
        "state": state.name,
        "message": state.message,
        "parameters": flow_run.parameters,
        "api_url": PREFECT_API_URL.value(),
        "ui_url": f"{ui}/runs/flow-run/{flow_run.id}" if ui else None,
    }


def post_json(url: str, payload: dict[str, Any], timeout: float = 10.0) -> int:
    """POST `payload` as JSON; returns the HTTP status."""
    request = urllib.request.Request(
        url, data=json.dumps(payload, default=str).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status


def on_flow_failure(flow, flow_run, state) -> None:
    """Prefect `on_failure`/`on_crashed` hook: log, then notify the webhook; never raises."""
    summary = failure_summary(flow.name, flow_run, state)
    logger.error("flow run %s (%s) ended %s: %s", flow_run.name, flow.name, state.name, state.message)
    url = webhook_url(flow_run.parameters or {})
    if not url:
        return
    try:
        status = post_json(url, summary)
        logger.info("failure reported to %s (HTTP %s)", url, status)
    except Exception as err:  # a broken webhook must not hide the run's own failure
        logger.warning("could not report the failure to %s: %s", url, err)
