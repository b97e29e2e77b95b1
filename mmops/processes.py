"""Child servers (Prefect, MLflow, workers): wait until healthy, stop by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float, log: Path | None = None) -> None:
    """Poll `url` until it answers 200; fail early, with the log's tail, if `proc` exits."""
    tail = lambda: f"; log {log}:\n{log.read_text()[-3000:]}" if log and log.exists() else ""  # noqa: E731
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited early with {proc.returncode}{tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout:.0f}s{tail()}")


def stop_group(proc: subprocess.Popen, timeout: float = 30, sig: int = signal.SIGTERM) -> None:
    """Stop a child started with `start_new_session=True` and its whole group: `sig`, then KILL."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
