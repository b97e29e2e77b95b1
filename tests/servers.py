"""Start real servers for tests on 127.0.0.1 and stop them by PID."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from mmops.processes import stop_group, wait_healthy

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(cmd: list[str], health_url: str, log: Path, env: dict | None = None, timeout: float = 120):
    """Run `cmd` in its own process group until the block ends; then stop it by PID."""
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True
        )
    try:
        wait_healthy(health_url, proc, timeout, log)
        yield proc
    finally:
        stop_group(proc, timeout=20)


@contextmanager
def prefect_server(home: Path):
    """A real `prefect server start` on 127.0.0.1 with its own PREFECT_HOME; yields the API URL."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    env = {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}
    cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    api = f"http://127.0.0.1:{port}/api"
    with running(cmd, f"{api}/health", home / "server.log", env):
        with temporary_settings(updates={PREFECT_API_URL: api}):
            try:
                yield api
            finally:
                drain_prefect_clients()


def drain_prefect_clients(timeout: float = 30) -> None:
    """Deliver buffered flow-run logs and events while the server is still up.

    Left queued, they are retried against the stopped server at interpreter exit, for minutes.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        service.drain_all(timeout=timeout, at_exit=False)


@contextmanager
def mlflow_tracking(uri: str):
    """Point MLflow (env var and the process-wide URI) at `uri` for the block, then restore."""
    import mlflow

    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old
        mlflow.set_tracking_uri(None)
