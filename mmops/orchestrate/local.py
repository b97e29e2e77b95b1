"""`mmops schedule`: everything the schedule needs to really fire on this machine.

1. a Prefect server on 127.0.0.1 (only when PREFECT_API_URL names none; its state in PREFECT_HOME,
   `.mmops/prefect` by default),
2. the `process` work pool, from infra/prefect-process-job-template.json,
3. the deployments (mmops/orchestrate/deploy.py), with flow runs starting in this folder,
4. a process worker that picks their runs up,

then waits until Ctrl-C (or SIGTERM) and stops what it started, by PID. The server, pool and
worker commands are the ones in infra/commands.yaml, as in compose and Kubernetes. Prefect
telemetry is off in each of them (mmops.env.TELEMETRY_OFF, unless the environment says otherwise).

While the server started here runs, PREFECT_HOME holds `server.json` (its API URL and PID) and
`server-auth` (its auth string, mode 0600), so `eval "$(mmops env)"` in another shell points the
`prefect` CLI at it; both are removed when it stops.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import yaml

from mmops.env import TELEMETRY_OFF, forget_prefect_server, record_prefect_server
from mmops.errors import UserError
from mmops.processes import stop_group, wait_healthy

INFRA = Path(__file__).resolve().parents[2] / "infra"
PROCESS_TEMPLATE = INFRA / "prefect-process-job-template.json"
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def command(name: str, **values: str) -> tuple[list[str], dict[str, str]]:
    """argv and required env of `name` in infra/commands.yaml, placeholders filled in; the
    program is taken from this interpreter's environment when it is there."""
    spec = yaml.safe_load((INFRA / "commands.yaml").read_text())[name]
    argv = [_PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), token) for token in spec["argv"]]
    local = Path(sys.executable).parent / argv[0]
    if local.exists():
        argv[0] = str(local)
    return argv, dict(spec.get("env") or {})


def _log(message: str) -> None:
    print(f"mmops schedule: {message}", flush=True)


@contextmanager
def started(name: str, argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """Run `argv` in its own process group, output to `log`; on exit stop it by PID (TERM, then KILL)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**_telemetry_off(), **env}
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}, start_new_session=True)
    _log(f"started {name} (pid {proc.pid}), log {log}")
    try:
        yield proc
    finally:
        stop_group(proc)
        _log(f"stopped {name} (pid {proc.pid})")


def _telemetry_off() -> dict[str, str]:
    """Prefect telemetry off for a child process, unless this environment sets it either way."""
    return {key: os.environ.get(key, value) for key, value in TELEMETRY_OFF.items()}


def _answers(url: str, timeout: float = 10) -> bool:
    """Whether `url` answers 200 (Prefect's /health needs no auth string)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def _raise_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def run_scheduler(
    params_path: str | None = "params.yaml",
    overrides: list[str] | None = None,
    data_dir: str | None = None,
    host: str = "127.0.0.1",
    port: int = 4200,
    log_dir: Path = Path(".mmops/logs"),
    stop_after: float | None = None,
) -> None:
    """Start server (if needed), pool, deployments and worker; block until interrupted."""
    named = os.environ.get("PREFECT_API_URL")
    if named and not _answers(f"{named.rstrip('/')}/health"):
        raise UserError(f"PREFECT_API_URL={named} does not answer. If it was a `mmops schedule` that has "
                        "stopped since `eval \"$(mmops env)\"`, run that again (or unset PREFECT_API_URL "
                        "PREFECT_API_AUTH_STRING) and this command starts its own server")
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from mmops.params_file import load_params

    params = load_params(params_path, overrides)
    pool = params.orchestration.work_pool
    log_dir = Path(log_dir).resolve()
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    # Ctrl-C stops everything, even when started from a shell that ran it in the background
    # (`cmd &` without job control starts it with SIGINT ignored, and Python then keeps it so)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with ExitStack() as stack:
        api = os.environ.get("PREFECT_API_URL") or None
        auth = os.environ.get("PREFECT_API_AUTH_STRING", "")  # the clients' credentials
        if api is None:
            # our own server wants an auth string: the given one, else a fresh one only the processes
            # started here know (set PREFECT_API_AUTH_STRING to use the API from elsewhere)
            api, auth = f"http://{host}:{port}/api", auth or f"mmops:{secrets.token_urlsafe(32)}"
            argv, env = command("prefect-server", host=host, port=str(port))
            env = {**env, "PREFECT_SERVER_API_AUTH_STRING": auth}
            server = stack.enter_context(started("prefect server", argv, env, log_dir / "prefect-server.log"))
            wait_healthy(f"{api}/health", server, timeout=180, log=log_dir / "prefect-server.log")
            record = record_prefect_server(api, server.pid, auth)  # for `mmops env` / `mmops ui prefect`
            stack.callback(forget_prefect_server, server.pid)  # runs before the server is stopped
            _log(f"server recorded in {record} (`eval \"$(mmops env)\"` points the prefect CLI at it)")
        env = {"PREFECT_API_URL": api, **({"PREFECT_API_AUTH_STRING": auth} if auth else {})}
        argv, pool_env = command("prefect-work-pool", pool=pool, type="process", template=str(PROCESS_TEMPLATE))
        subprocess.run(argv, env={**os.environ, **_telemetry_off(), **pool_env, **env}, check=True,
                       stdout=subprocess.DEVNULL)
        _log(f"work pool {pool} (process) ready")
        with temporary_settings(updates={PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: auth or None}):
            from mmops.orchestrate.deploy import deploy

            for name, deployment_id in deploy(params_path, overrides, data_dir, working_dir=str(Path.cwd())).items():
                _log(f"deployed {name} ({deployment_id})")
            stack.callback(_drain_prefect_clients)
        argv, worker_env = command("prefect-worker", pool=pool, type="process")
        worker = stack.enter_context(started("prefect worker", argv, {**worker_env, **env}, log_dir / "prefect-worker.log"))
        schedule = params.orchestration.schedule
        _log(f"ready: API {api}; schedule `{schedule.cron}` ({schedule.timezone}, "
             f"{'on' if schedule.enabled else 'paused'}); Ctrl-C stops everything started here")
        deadline = None if stop_after is None else time.monotonic() + stop_after
        try:
            while worker.poll() is None and (deadline is None or time.monotonic() < deadline):
                time.sleep(1)
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}; see {log_dir / 'prefect-worker.log'}")
        except KeyboardInterrupt:
            _log("interrupted; stopping")


def _drain_prefect_clients() -> None:
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        service.drain_all(timeout=10, at_exit=False)
